// `node --import ./test/helpers/compiled.mjs --test test/x/y.test.ts`: see compiled-hooks.mjs.
import * as module from 'node:module';
import { loadSync } from './compiled-hooks.mjs';

if (typeof module.registerHooks === 'function') module.registerHooks({ load: loadSync });
else module.register('./compiled-hooks.mjs', import.meta.url);
// Stack traces and test locations point into the .ts sources (esbuild's source maps), as under tsx.
process.setSourceMapsEnabled(true);
