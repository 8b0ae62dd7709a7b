/**
 * Summarises a V8 `.cpuprofile` (written by `node --cpu-prof`): self time per function, the
 * evidence behind tuning recommendations. Self time of a node = its sample count x the mean sample
 * interval; functions are merged across call sites by name + script + line.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTimeEntry {
  functionName: string;
  /** Script path relative to the repository (or `node:` / native), with the 1-based line. */
  location: string;
  selfMs: number;
  selfPercent: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  /** Share of samples in the idle/program/GC pseudo-frames. */
  idlePercent: number;
  gcPercent: number;
  top: SelfTimeEntry[];
  /**
   * Inclusive time (the function and everything it called) of the project's functions
   * (`src/`) and its dependencies (`node_modules/`): which part of the gateway a cost belongs to,
   * where self time shows only the native leaf (a write, a GC). `selfMs`/`selfPercent` hold the
   * inclusive figures here.
   */
  inclusive: SelfTimeEntry[];
}

function shorten(url: string): string {
  if (!url) return '(native)';
  const noScheme = url.replace(/^file:\/\//, '');
  const repo = noScheme.indexOf('/src/');
  if (repo >= 0) return noScheme.slice(repo + 1);
  const nm = noScheme.lastIndexOf('/node_modules/');
  if (nm >= 0) return noScheme.slice(nm + 1);
  return noScheme;
}

export function summariseCpuProfile(file: string, topN = 25, inclusiveN = 20): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const counts = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    counts.set(id, (counts.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const byKey = new Map<string, SelfTimeEntry>();
  let totalUs = 0;
  let idleUs = 0;
  let gcUs = 0;
  for (const node of profile.nodes) {
    const us = counts.get(node.id) ?? 0;
    if (us === 0) continue;
    totalUs += us;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') idleUs += us;
    if (functionName === '(garbage collector)') gcUs += us;
    const name = functionName || '(anonymous)';
    const location = url ? `${shorten(url)}:${lineNumber + 1}` : shorten(url);
    const key = `${name}@${location}`;
    const entry = byKey.get(key) ?? { functionName: name, location, selfMs: 0, selfPercent: 0 };
    entry.selfMs += us / 1000;
    byKey.set(key, entry);
  }
  const busyUs = totalUs - idleUs;
  const top = [...byKey.values()]
    .filter((e) => e.functionName !== '(idle)')
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, topN)
    .map((e) => ({ ...e, selfPercent: busyUs > 0 ? (e.selfMs * 1000 * 100) / busyUs : 0 }));
  return {
    file,
    totalMs: totalUs / 1000,
    idlePercent: totalUs > 0 ? (idleUs * 100) / totalUs : 0,
    gcPercent: busyUs > 0 ? (gcUs * 100) / busyUs : 0,
    top,
    inclusive: inclusiveTimes(profile, busyUs, inclusiveN),
  };
}

/** Each sample counts once for every distinct function on its stack (recursion counted once). */
function inclusiveTimes(profile: CpuProfile, busyUs: number, topN: number): SelfTimeEntry[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const entries = new Map<string, SelfTimeEntry>();
  for (let i = 0; i < profile.samples.length; i++) {
    const us = profile.timeDeltas[i] ?? 0;
    const seen = new Set<string>();
    for (let id: number | undefined = profile.samples[i]; id !== undefined; id = parent.get(id)) {
      const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
      if (!/\/(src|node_modules)\//.test(url)) continue;
      const name = functionName || '(anonymous)';
      const location = `${shorten(url)}:${lineNumber + 1}`;
      const key = `${name}@${location}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const entry = entries.get(key) ?? { functionName: name, location, selfMs: 0, selfPercent: 0 };
      entry.selfMs += us / 1000;
      entries.set(key, entry);
    }
  }
  return [...entries.values()]
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, topN)
    .map((e) => ({ ...e, selfPercent: busyUs > 0 ? (e.selfMs * 1000 * 100) / busyUs : 0 }));
}
