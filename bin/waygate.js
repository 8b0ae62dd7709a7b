#!/usr/bin/env node
// Entry point for the `waygate` command: the compiled JavaScript under dist/ (`npm run build`;
// `npm start` and `npm test` build first), never a TypeScript loader at run time. Workers
// (--workers) fork this same file (src/gateway/cluster.ts).
let main
try {
  ;({ main } = await import('../dist/src/cli/main.js'))
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !String(err.message).includes('dist/src/cli/main.js')) throw err
  process.stderr.write('waygate: the compiled JavaScript (dist/) is missing: run `npm run build` (npm start and npm test build first)\n')
  process.exit(2)
}
process.exitCode = await main(process.argv.slice(2))
