/**
 * The round runner of the data-plane suites (hbone.bench.ts, waypoint.bench.ts): one warm-up of
 * every path, then rounds that are scenario-major, the path order shuffled per round.
 *
 * Scenario-major: every path runs a scenario back to back before the next scenario, so a ratio
 * compares measurements seconds apart. These shared machines drift by 50% over minutes (the same
 * gateway build measured 1.2 and 2.1 s/GiB in consecutive runs), and path-major rounds put ~35 s
 * between waygate's and haproxy's bulk numbers. The shuffle keeps a fixed path order from favouring
 * whichever path runs first after a scenario change.
 */
import { download, echoLatency, echoOnce, runConcurrent, upload, type Opener } from './traffic.ts';

/** What the warm-up drives: `open` reuses the path's client connection, `openFresh` makes a new one. */
export interface WarmablePath {
  readonly name: string;
  readonly open: Opener;
  readonly openFresh?: Opener;
}

export interface WarmUpPlan {
  /** CONNECTs (open, echo 100 B, close) on `open`: how many, how many in flight. */
  readonly connects: { count: number; inFlight: number };
  /** The same over new connections (`openFresh`, a TLS handshake each), when given. */
  readonly freshConnects?: { count: number; inFlight: number };
}

/**
 * Warms every path up before round 1 (JIT, TLS session caches, lazy initialisation, a pool's first
 * connections): 8 MiB each way, the plan's CONNECTs, 200 echo round trips. Names the path that failed.
 */
export async function warmUp(paths: readonly WarmablePath[], plan: WarmUpPlan, log: (line: string) => void, label: string): Promise<void> {
  if (paths.length === 0) return;
  log(label);
  for (const p of paths) {
    try {
      await upload(p.open, 8 * 1024 * 1024);
      await download(p.open, 8 * 1024 * 1024);
      await runConcurrent(plan.connects.count, plan.connects.inFlight, () => echoOnce(p.open, 100));
      const fresh = plan.freshConnects;
      if (fresh && p.openFresh) await runConcurrent(fresh.count, fresh.inFlight, () => echoOnce(p.openFresh!, 100));
      await echoLatency(p.open, 200);
    } catch (err) {
      throw new Error(`warm-up of ${p.name} failed: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** One scenario of a round: measures one path and records what it measured. */
export interface RoundScenario<P> {
  /** Named in the error that a failure becomes: "<path> (<suite> <name>, round N)". */
  readonly name: string;
  run(path: P, round: number): Promise<void>;
}

export interface RoundsOptions<P> {
  readonly paths: readonly P[];
  readonly rounds: number;
  /** Added to the round number to seed the path order (each suite keeps its own order). */
  readonly seed: number;
  /** The scenarios selected for this run, in the order they run within a round. */
  readonly scenarios: readonly RoundScenario<P>[];
  readonly log: (line: string) => void;
  /** Names the suite in the "round N/M done" line and in errors (`waypoint`); none for the first suite, hbone. */
  readonly suite?: string;
}

/**
 * Runs `rounds` rounds: per round, each scenario on every path (in that round's shuffled order).
 * A failure is rethrown naming the path, scenario and round.
 */
export async function runRounds<P extends { readonly name: string }>(opts: RoundsOptions<P>): Promise<void> {
  if (opts.paths.length === 0) return;
  for (let round = 0; round < opts.rounds; round++) {
    const t0 = Date.now();
    const order = shuffle(opts.paths, round + opts.seed);
    for (const s of opts.scenarios) {
      for (const p of order) {
        try {
          await s.run(p, round);
        } catch (err) {
          const scenario = opts.suite ? `${opts.suite} ${s.name}` : s.name;
          throw new Error(`${p.name} (${scenario}, round ${round + 1}): ${(err as Error).message}`, { cause: err });
        }
      }
    }
    opts.log(`${opts.suite ? `${opts.suite}: ` : ''}round ${round + 1}/${opts.rounds} done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
}

/** Deterministic shuffle (LCG) so the path order differs per round but runs are reproducible. */
export function shuffle<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let x = seed || 1;
  for (let i = out.length - 1; i > 0; i--) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const j = x % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
