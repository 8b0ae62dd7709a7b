// `node --import ./test/helpers/compiled.mjs --test test/x/y.test.ts`: see compiled-hooks.mjs.
import * as module from 'node:module';
import { loadSync, resolveSync } from './compiled-hooks.mjs';

if (typeof module.registerHooks === 'function') module.registerHooks({ resolve: resolveSync, load: loadSync });
else module.register('./compiled-hooks.mjs', import.meta.url);
// Stack traces and test locations point into the .ts sources (tsc's source maps), as under tsx.
process.setSourceMapsEnabled(true);
