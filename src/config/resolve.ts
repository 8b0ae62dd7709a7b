/**
 * The effective config: defaults of the chosen profile, then the config file, then flags (each
 * layer overrides the one before; lists replace, mappings merge). The result is frozen and is
 * what `--print-config` and `GET /debug/config` show.
 */
import { stringify } from 'yaml';
import { checkMergedDiscovery, checkMergedTls, loadConfigFile, type ConfigLayer } from './load.ts';
import {
  CONFIG_API_VERSION, CONFIG_KIND, DEFAULT_STATE_DIR, embeddedDefaults, productionDefaults, withEffectiveLimits, type ConfigProfile, type GatewayConfig,
} from './schema.ts';
import { deepFreeze } from '../util/deep-freeze.ts';

/** The embedded profile's audit log, relative to the working directory. */
export const EMBEDDED_AUDIT_LOG = `${DEFAULT_STATE_DIR}/audit.jsonl`;

export interface EffectiveConfig {
  config: Readonly<GatewayConfig>;
  profile: ConfigProfile;
  /** The config file, null for the embedded profile. */
  file: string | null;
}

export interface ResolveOptions {
  /** `--config`; absent selects the embedded profile. */
  configFile?: string | undefined;
  /** Flag overrides, already validated. */
  flags?: ConfigLayer;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Overlays `layer` on `base`: scalars and lists replace, mappings merge key by key. */
export function mergeLayer<T>(base: T, layer: unknown): T {
  if (!isPlainObject(base) || !isPlainObject(layer)) return (layer === undefined ? base : layer) as T;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(layer)) {
    if (v === undefined) continue;
    out[k] = isPlainObject(out[k]) && isPlainObject(v) ? mergeLayer(out[k], v) : v;
  }
  return out as T;
}

/** Builds the effective config. Throws ConfigError (WG_CONFIG) for an invalid file. */
export function resolveConfig(opts: ResolveOptions = {}): EffectiveConfig {
  const env = opts.env ?? process.env;
  const profile: ConfigProfile = opts.configFile ? 'production' : 'embedded';
  const cwd = opts.cwd ?? process.cwd();
  let config: GatewayConfig = profile === 'production' ? productionDefaults(env) : embeddedDefaults(cwd, env);
  // The embedded profile (`npm start`) keeps its audit log beside its dev PKI, where `waygate
  // audit` can read it back, instead of interleaving it with the terminal's stdout. Production
  // keeps stdout, the container log pipeline's input. docs/operating.md, "Starting it".
  if (profile === 'embedded') config = mergeLayer(config, { audit: { destination: `${cwd}/${EMBEDDED_AUDIT_LOG}` } });
  if (opts.configFile) config = mergeLayer(config, loadConfigFile(opts.configFile));
  if (opts.flags) config = mergeLayer(config, opts.flags);
  checkMergedDiscovery(config, opts.configFile);
  checkMergedTls(config, opts.flags, opts.configFile);
  config = withEffectiveLimits(config);
  return { config: deepFreeze(structuredClone(config)), profile, file: opts.configFile ?? null };
}

const FIELD_ORDER: readonly (keyof GatewayConfig)[] = [
  'listen', 'tls', 'trustDomains', 'policies', 'defaultAction', 'denyStatus', 'destinations', 'discovery', 'upstream',
  'timeouts', 'limits', 'audit', 'log', 'admin', 'workers', 'proxyProtocol', 'sandwich', 'registration',
];

function inSchemaOrder(c: Readonly<GatewayConfig>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of FIELD_ORDER) out[k] = c[k];
  return out;
}

/** The effective config as a GatewayConfig document, as `--print-config` prints it. */
export function configToYaml(effective: EffectiveConfig): string {
  const header = `# effective config (profile: ${effective.profile}${effective.file ? `, file: ${effective.file}` : ''})\n`;
  return header + stringify({
    apiVersion: CONFIG_API_VERSION,
    kind: CONFIG_KIND,
    metadata: { name: 'waygate' },
    spec: inSchemaOrder(effective.config),
  }, { lineWidth: 0 });
}
