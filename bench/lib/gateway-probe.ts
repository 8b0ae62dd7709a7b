/**
 * A measuring probe loaded into the gateway process of the reload scenario (`node --import tsx
 * --import bench/lib/gateway-probe.ts --expose-gc bin/waygate.js serve ...`), so event-loop
 * blocking and retained heap are read inside the real gateway, under real traffic, without any
 * hook in src/. It listens on 127.0.0.1:$WAYGATE_BENCH_PROBE_PORT (HTTP, the bench only):
 *
 *   POST /loop/reset   starts a new event-loop delay window
 *   GET  /loop         that window: the longest delay (= the longest the loop was blocked, to
 *                      within PROBE_RESOLUTION_MS), p99, mean, samples, in ms
 *   POST /gc           two full garbage collections (`--expose-gc`), then process.memoryUsage() and
 *                      the code space's share of heapUsed (JIT code: grows with what ran, not with
 *                      what is kept)
 *
 * The delay comes from perf_hooks.monitorEventLoopDelay: a timer every PROBE_RESOLUTION_MS, each
 * interval between two of its runs recorded, so a synchronous run of X ms shows as one sample of
 * about X ms plus the period.
 */
import { createServer } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';

/** Sampling period of the delay monitor: the precision of "longest block". */
export const PROBE_RESOLUTION_MS = 2;

const port = Number(process.env['WAYGATE_BENCH_PROBE_PORT']);
if (Number.isInteger(port) && port > 0) {
  const loop = monitorEventLoopDelay({ resolution: PROBE_RESOLUTION_MS });
  loop.enable();
  const gc = (globalThis as { gc?: () => void }).gc;
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    if (req.method === 'POST' && req.url === '/loop/reset') {
      loop.reset();
      send(200, {});
    } else if (req.method === 'GET' && req.url === '/loop') {
      const ms = (ns: number): number => ns / 1e6;
      // Each sample is the interval between two runs of the timer, the period included: subtract it.
      send(200, {
        maxMs: Math.max(0, ms(loop.max) - PROBE_RESOLUTION_MS),
        p99Ms: Math.max(0, ms(loop.percentile(99)) - PROBE_RESOLUTION_MS),
        meanMs: Math.max(0, ms(loop.mean) - PROBE_RESOLUTION_MS),
        samples: loop.count,
      });
    } else if (req.method === 'POST' && req.url === '/gc') {
      if (!gc) {
        send(500, { error: 'start the gateway with --expose-gc' });
        return;
      }
      // Twice: the first collection may leave objects kept alive by finalizers or weak maps.
      gc();
      gc();
      const codeSpaceUsed = getHeapSpaceStatistics().find((x) => x.space_name === 'code_space')?.space_used_size ?? 0;
      send(200, { ...process.memoryUsage(), codeSpaceUsed });
    } else {
      send(404, {});
    }
  });
  server.listen(port, '127.0.0.1');
  // The probe must never keep a gateway alive that is shutting down.
  server.unref();
}
