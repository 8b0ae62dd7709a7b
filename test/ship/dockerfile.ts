/**
 * Reads the repository's Dockerfile and .dockerignore the way `docker build` does, for the parts
 * they use, so test/ship/runtime-files.test.ts can assemble exactly what the image holds without a
 * Docker engine: stages (`FROM image AS name`, `ARG` defaults before the first FROM), `WORKDIR`,
 * `COPY [--from=stage] src... dest`, `RUN`. Line continuations and comments as the Dockerfile
 * reference describes; anything else this file does not understand is an error, not ignored.
 */
import { cpSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

export interface Copy {
  /** `--from=<stage>`; null: the build context. */
  from: string | null;
  sources: string[];
  dest: string;
}

export interface Stage {
  name: string;
  base: string;
  workdir: string;
  copies: Copy[];
  runs: string[];
  /** `USER`, as written; null when the stage sets none. */
  user: string | null;
  /** `ENTRYPOINT` in exec form (a JSON array); null when the stage sets none. */
  entrypoint: string[] | null;
}

const KNOWN = new Set(['ARG', 'FROM', 'WORKDIR', 'COPY', 'RUN', 'ENV', 'USER', 'EXPOSE', 'ENTRYPOINT', 'CMD']);

/** The stages of a Dockerfile, in order; the last is the image. */
export function parseDockerfile(text: string): Stage[] {
  // Comments are whole lines starting with `#` (parser directives included); `\` continues a line.
  const logical: string[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw)) continue;
    if (raw.endsWith('\\')) {
      pending += raw.slice(0, -1) + ' ';
      continue;
    }
    const line = (pending + raw).trim();
    pending = '';
    if (line) logical.push(line);
  }
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  const expand = (s: string): string => s.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => {
    const v = args.get((a ?? b)!);
    if (v === undefined) throw new Error(`Dockerfile: \${${a ?? b}} has no default`);
    return v;
  });
  for (const line of logical) {
    const [keyword, ...rest] = line.split(/\s+/);
    const op = keyword!.toUpperCase();
    const body = line.slice(keyword!.length).trim();
    if (!KNOWN.has(op)) throw new Error(`Dockerfile: instruction ${op} is not understood by test/ship/dockerfile.ts`);
    if (op === 'ARG') {
      const [name, value] = body.split('=', 2);
      if (stages.length === 0 && value !== undefined) args.set(name!, value);
      continue;
    }
    if (op === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest.join(' '));
      if (!m) throw new Error(`Dockerfile: cannot read "${line}"`);
      stages.push({ name: m[2] ?? String(stages.length), base: expand(m[1]!), workdir: '/', copies: [], runs: [], user: null, entrypoint: null });
      continue;
    }
    const stage = stages.at(-1);
    if (!stage) throw new Error(`Dockerfile: ${op} before FROM`);
    if (op === 'WORKDIR') stage.workdir = path.posix.resolve(stage.workdir, body);
    if (op === 'RUN') stage.runs.push(body);
    if (op === 'USER') stage.user = body;
    if (op === 'ENTRYPOINT') {
      const v = JSON.parse(body) as unknown;
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new Error(`Dockerfile: ENTRYPOINT must be exec form: "${line}"`);
      stage.entrypoint = v;
    }
    if (op === 'COPY') {
      let from: string | null = null;
      const words = rest.filter((w) => {
        const flag = /^--(\w+)=(.*)$/.exec(w);
        if (!flag) return true;
        if (flag[1] === 'from') from = flag[2]!;
        else throw new Error(`Dockerfile: COPY flag --${flag[1]} is not understood by test/ship/dockerfile.ts`);
        return false;
      });
      if (words.length < 2 || words[0]!.startsWith('[')) throw new Error(`Dockerfile: cannot read "${line}"`);
      stage.copies.push({ from, sources: words.slice(0, -1), dest: words.at(-1)! });
    }
  }
  return stages;
}

/** Go's filepath.Match for one path segment pattern set: `*` and `?` never cross `/`. */
function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (const ch of pattern) {
    if (ch === '*') re += '[^/]*';
    else if (ch === '?') re += '[^/]';
    else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/**
 * `.dockerignore`: whether a context path (relative, `/`-separated) enters the build context. A
 * pattern matches a path or any of its parent directories; the last matching pattern decides, and
 * `!` re-includes (the Docker build reference, ".dockerignore file"). `**` is refused (not used).
 */
export function dockerignore(text: string): (relPath: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = path.posix.normalize((negate ? l.slice(1) : l).trim()).replace(/^\/+|\/+$/g, '');
      if (pattern.includes('**')) throw new Error('.dockerignore: ** is not understood by test/ship/dockerfile.ts');
      return { negate, re: globToRegExp(pattern) };
    });
  return (relPath) => {
    const parts = relPath.split('/');
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let included = true;
    for (const r of rules) if (prefixes.some((p) => r.re.test(p))) included = r.negate;
    return included;
  };
}

/**
 * COPY's semantics for one source: a directory's contents go into `dest`; a file goes to `dest`, or
 * into it when `dest` ends with `/` (or there are several sources). `admit` filters every file by
 * its path relative to `srcRoot` (the build context's .dockerignore; stages admit everything).
 * `place` puts one file at its destination: a copy by default; a caller may hard-link files of a
 * scratch directory it owns (the same file set, without writing the bytes again).
 */
export function copyInto(srcRoot: string, source: string, destDir: string, dest: string, several: boolean, admit: (rel: string) => boolean = () => true, place: (from: string, to: string) => void = cpSync): void {
  const rel = path.posix.normalize(source).replace(/^\/+/, '');
  const from = path.join(srcRoot, rel);
  const to = path.resolve(destDir, dest);
  if (rel !== '.' && !admit(rel)) throw new Error(`COPY ${source}: excluded by .dockerignore`);
  if (statSync(from).isDirectory()) {
    mkdirSync(to, { recursive: true });
    for (const entry of readdirSync(from)) copyTree(path.join(from, entry), path.join(to, entry), rel === '.' ? entry : `${rel}/${entry}`, admit, place);
    return;
  }
  const target = dest.endsWith('/') || several ? path.join(to, path.basename(from)) : to;
  mkdirSync(path.dirname(target), { recursive: true });
  place(from, target);
}

function copyTree(from: string, to: string, rel: string, admit: (rel: string) => boolean, place: (from: string, to: string) => void): void {
  if (statSync(from).isDirectory()) {
    mkdirSync(to, { recursive: true });
    for (const entry of readdirSync(from)) copyTree(path.join(from, entry), path.join(to, entry), `${rel}/${entry}`, admit, place);
  } else if (admit(rel)) {
    place(from, to);
  }
}
