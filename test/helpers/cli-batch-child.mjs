// Child process of test/helpers/cli-batch.ts: runs `waygate ARGS` invocations one after another in
// this one process, each through the compiled product's main() (dist/src/cli/main.js, what
// bin/waygate.js runs), so a test pays for loading the CLI once instead of once per invocation.
// Each request arrives over the IPC channel; for its duration process.stdin is a stream of the
// request's input and process.stdout/stderr are collectors (not terminals, as when piped), then
// the exit code bin/waygate.js would have set and both texts go back. Plain JavaScript like
// bin/waygate.js: no TypeScript loader in the child.
import { Readable, Writable } from 'node:stream';

const { main } = await import(new URL('../../dist/src/cli/main.js', import.meta.url).href);

function collector() {
  let text = '';
  const stream = new Writable({
    decodeStrings: false,
    write(chunk, _encoding, callback) {
      text += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
      callback();
    },
  });
  return { stream, text: () => text };
}

/** Replaces process[name] (a configurable getter) and returns a function restoring it. */
function swap(name, stream) {
  const previous = Object.getOwnPropertyDescriptor(process, name);
  Object.defineProperty(process, name, { configurable: true, enumerable: true, get: () => stream });
  return () => Object.defineProperty(process, name, previous);
}

async function run({ args, input }) {
  const out = collector();
  const err = collector();
  const restore = [
    swap('stdin', Readable.from(input === '' ? [] : [Buffer.from(input, 'utf8')])),
    swap('stdout', out.stream),
    swap('stderr', err.stream),
  ];
  process.exitCode = undefined;
  let code;
  try {
    code = await main(args);
  } catch (e) {
    // What an uncaught rejection in bin/waygate.js would show: the stack on stderr, exit 1.
    err.stream.write(`${e instanceof Error ? e.stack : String(e)}\n`);
    code = 1;
  } finally {
    for (const r of restore.reverse()) r();
    process.exitCode = undefined;
  }
  return { code, stdout: out.text(), stderr: err.text() };
}

// One at a time, in arrival order: the invocations share process-wide streams and exitCode.
let queue = Promise.resolve();
process.on('message', (request) => {
  queue = queue.then(async () => process.send({ id: request.id, ...(await run(request)) }));
});
process.send({ ready: true });
