/**
 * `waygate doctor`'s check of sandwich mode (docs/waypoint.md, "Sandwich mode";
 * examples/kubernetes-sandwich/): the pieces that must agree for the node's ztunnel to hand each
 * stream to waygate's sandwich listener.
 *
 * - The inbound binding, `ambient.istio.io/waypoint-inbound-binding: PROXY/<port>` on the Gateway,
 *   else on its GatewayClass (istio/istio pilot/pkg/serviceregistry/ambient/waypoints.go
 *   makeInboundBinding, getGatewayOrGatewayClassAnnotation): with it ztunnel sends every inbound
 *   stream of the waypoint's pods to `<port>` on loopback with a PROXY v2 header.
 * - The config's `sandwich.listen` on that port: otherwise nothing (or the wrong thing) listens.
 * - The bound listener (findBoundListener: the first listener on the binding's port, else the first
 *   with protocol `istio.io/PROXY`): istiod reads allowedRoutes from it instead of the HBONE
 *   listener, which doctor's per-namespace checks read; the two should admit the same namespaces.
 * - The gateway's namespace labelled `istio.io/dataplane-mode: ambient` and its pods not opted
 *   out with `none`: otherwise no ztunnel runs in the pods' network namespace at all.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Check } from './doctor.ts';

export const INBOUND_BINDING_ANNOTATION = 'ambient.istio.io/waypoint-inbound-binding';
/** The listener protocol istiod matches when the binding names no port (constants.WaypointSandwichListenerProxyProtocol). */
export const PROXY_LISTENER_PROTOCOL = 'istio.io/PROXY';
const DATAPLANE_MODE = 'istio.io/dataplane-mode';

export interface SandwichFacts {
  /** `Gateway ns/name`. */
  gwRef: string;
  namespace: string;
  /** The binding annotation and where it was found (the Gateway's wins over its class's). */
  binding: { value: string; on: 'Gateway' | 'GatewayClass' } | undefined;
  listeners: { name: string; port: number; protocol: string; allowedRoutes?: unknown }[];
  /** The mounted config's `sandwich.listen`; undefined when no config was found. */
  sandwichListen: string | null | undefined;
  configSource: string | undefined;
  /** `istio.io/dataplane-mode` of the gateway's namespace (null: unset; undefined: the namespace could not be read). */
  namespaceMode: string | null | undefined;
  /** The same label on the Deployment's pod template (undefined: unset). */
  podMode: string | undefined;
}

const portOf = (hostPort: string): number => Number(hostPort.slice(hostPort.lastIndexOf(':') + 1));

/** The `sandwich` check; none in HBONE mode (no binding, sandwich.listen off). */
export function sandwichCheck(f: SandwichFacts): Check | undefined {
  const listen = f.sandwichListen ?? null;
  if (!f.binding && listen === null) return undefined;
  const fails: { message: string; fix: string }[] = [];
  const warns: { message: string; fix: string }[] = [];
  const annotate = `kubectl -n ${f.namespace} annotate gateway ${f.gwRef.split('/').pop()} ${INBOUND_BINDING_ANNOTATION}=PROXY/${listen === null ? 15088 : portOf(listen)} --overwrite (examples/kubernetes-sandwich/)`;

  let bindingPort: number | undefined;
  if (!f.binding) {
    fails.push({ message: `${f.configSource} sets sandwich.listen ${listen}, but ${f.gwRef} (and its class) has no ${INBOUND_BINDING_ANNOTATION}: ztunnel never sends streams there`, fix: annotate });
  } else {
    const m = /^PROXY(?:\/(\d{1,5}))?$/.exec(f.binding.value);
    if (!m) {
      fails.push({ message: `${INBOUND_BINDING_ANNOTATION} on the ${f.binding.on} is ${f.binding.value}: waygate's sandwich listener reads PROXY v2 headers only (PROXY/<port>)`, fix: annotate });
    } else {
      bindingPort = m[1] === undefined ? undefined : Number(m[1]);
      if (listen === null) {
        fails.push({ message: `${f.gwRef} is bound with ${f.binding.value} (on the ${f.binding.on}), but ${f.configSource ?? 'the mounted config (not found)'} has no sandwich.listen: ztunnel sends the waypoint's streams to a port where nothing listens`,
          fix: 'set sandwich.listen: 127.0.0.1:15088 in the config (examples/kubernetes-sandwich/gateway.yaml), or remove the annotation for HBONE mode' });
      } else if (bindingPort === undefined) {
        warns.push({ message: `${INBOUND_BINDING_ANNOTATION} is PROXY without a port: doctor cannot tell whether ztunnel's port is sandwich.listen's (${portOf(listen)})`, fix: annotate });
      } else if (bindingPort !== portOf(listen)) {
        fails.push({ message: `${f.gwRef} is bound to port ${bindingPort} (${f.binding.value}), but sandwich.listen is ${listen}: ztunnel's streams reach no listener`, fix: annotate });
      }
    }
  }

  if (f.binding) {
    // istiod's findBoundListener: the binding's port, else the PROXY protocol.
    const bound = bindingPort !== undefined ? f.listeners.find((l) => l.port === bindingPort) : f.listeners.find((l) => l.protocol === PROXY_LISTENER_PROTOCOL);
    const hbone = f.listeners.find((l) => l.port === 15008 && l.protocol === 'HBONE');
    if (!bound) {
      warns.push({ message: `${f.gwRef} has no listener bound by ${f.binding.value}: istiod falls back to the HBONE listener's allowedRoutes`,
        fix: `add listeners: [{name: proxy, port: ${bindingPort ?? 15088}, protocol: ${PROXY_LISTENER_PROTOCOL}, allowedRoutes: <the HBONE listener's>}] (examples/kubernetes-sandwich/)` });
    } else if (hbone && !isDeepStrictEqual(bound.allowedRoutes, hbone.allowedRoutes)) {
      warns.push({ message: `listener ${bound.name} (bound: istiod reads allowedRoutes from it) and the HBONE listener ${hbone.name} (doctor's namespace checks read it) admit different namespaces`,
        fix: `give listener ${bound.name} the same allowedRoutes as ${hbone.name}` });
    }
  }

  if (f.namespaceMode !== undefined && f.namespaceMode !== 'ambient') {
    fails.push({ message: `namespace ${f.namespace} is ${f.namespaceMode === null ? `not labelled ${DATAPLANE_MODE}` : `labelled ${DATAPLANE_MODE}=${f.namespaceMode}`}: in sandwich mode waygate's pods are in the ambient mesh, their ztunnel does the mTLS`,
      fix: `kubectl label namespace ${f.namespace} ${DATAPLANE_MODE}=ambient --overwrite` });
  }
  if (f.podMode === 'none') {
    fails.push({ message: `the pod template is labelled ${DATAPLANE_MODE}=none: the pods stay out of the mesh whatever the namespace says`, fix: `remove the label from the Deployment's pod template (examples/kubernetes-sandwich/)` });
  }

  const worst = fails.length > 0 ? fails : warns;
  if (worst.length > 0) {
    return { id: 'sandwich', status: fails.length > 0 ? 'fail' : 'warn', message: `sandwich mode: ${worst.map((p) => p.message).join('; ')}`, fix: worst.map((p) => p.fix).join('; ') };
  }
  return { id: 'sandwich', status: 'ok', message: `sandwich mode: ztunnel hands each stream to ${listen} with a PROXY header (${f.binding!.value} on the ${f.binding!.on}); namespace ${f.namespace} is in the ambient mesh` };
}
