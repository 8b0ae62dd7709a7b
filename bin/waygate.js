#!/usr/bin/env node
// Entry point for the `waygate` command. The sources are TypeScript run through tsx's ESM loader,
// so `npm install && npm start` needs no separate build step; `npm run build` emits dist/ for
// images that prefer plain JavaScript (node dist/src/cli/main.js).
import { register } from 'tsx/esm/api'

register()
const { main } = await import('../src/cli/main.ts')
process.exitCode = await main(process.argv.slice(2))
