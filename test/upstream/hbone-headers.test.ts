import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { authorityOf, forwardedFor, hboneConnectHeaders, type ConnectHeaderInput } from '../../src/upstream/hbone-headers.ts';

const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const SVC = 'api.shop.svc.cluster.local';

function input(o: { ip?: string; port?: number; srcIp?: string; srcPort?: number; headers?: Record<string, string>; service?: string | null }): ConnectHeaderInput {
  return {
    ip: o.ip ?? '10.0.0.7',
    port: o.port ?? 8080,
    context: { source: { ip: o.srcIp ?? '10.1.2.3', port: o.srcPort ?? 40000 }, request: { headers: o.headers ?? {} } },
    endpoint: o.service === null ? null : { service: o.service ?? SVC },
  };
}

describe('hboneConnectHeaders', () => {
  const cases: { name: string; in: ConnectHeaderInput; baggage?: string; want: Record<string, string> }[] = [
    {
      name: 'all headers: authority, traceparent passed on, forwarded with host, baggage',
      in: input({ headers: { traceparent: TP, 'x-other': 'not forwarded' } }),
      baggage: 'k8s.namespace.name=waygate',
      want: { ':method': 'CONNECT', ':authority': '10.0.0.7:8080', traceparent: TP, forwarded: `for="10.1.2.3:40000";host=${SVC}`, baggage: 'k8s.namespace.name=waygate' },
    },
    {
      name: 'IPv6 pod and client: bracketed authority, bracketed and quoted for (RFC 7239 §6)',
      in: input({ ip: 'fd00::7', srcIp: '2001:db8::1', srcPort: 5 }),
      want: { ':method': 'CONNECT', ':authority': '[fd00::7]:8080', forwarded: `for="[2001:db8::1]:5";host=${SVC}` },
    },
    {
      name: 'a workload address (service "") has no host',
      in: input({ service: '' }),
      want: { ':method': 'CONNECT', ':authority': '10.0.0.7:8080', forwarded: 'for="10.1.2.3:40000"' },
    },
    {
      name: 'no endpoint: no host',
      in: input({ service: null }),
      want: { ':method': 'CONNECT', ':authority': '10.0.0.7:8080', forwarded: 'for="10.1.2.3:40000"' },
    },
    {
      name: 'surrounding whitespace of a valid traceparent is dropped',
      in: input({ headers: { traceparent: ` ${TP} ` } }),
      want: { ':method': 'CONNECT', ':authority': '10.0.0.7:8080', traceparent: TP, forwarded: `for="10.1.2.3:40000";host=${SVC}` },
    },
    {
      name: 'no verified source: no forwarded',
      in: input({ srcIp: '', srcPort: 0 }),
      want: { ':method': 'CONNECT', ':authority': '10.0.0.7:8080' },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(hboneConnectHeaders(c.in, c.baggage ?? ''), c.want);
    });
  }

  const malformed: [string, string][] = [
    ['upper-case hex', TP.toUpperCase()],
    ['all-zero trace id', '00-00000000000000000000000000000000-00f067aa0ba902b7-01'],
    ['all-zero parent id', '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01'],
    ['version ff', 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
    ['two values joined', `${TP}, ${TP}`],
    ['truncated', TP.slice(0, 40)],
    ['empty', ''],
  ];
  for (const [name, value] of malformed) {
    it(`omits a malformed traceparent (${name})`, () => {
      assert.equal(hboneConnectHeaders(input({ headers: { traceparent: value } }), '')['traceparent'], undefined);
    });
  }
});

describe('authorityOf / forwardedFor', () => {
  it('brackets IPv6 only', () => {
    assert.equal(authorityOf('10.0.0.1', 80), '10.0.0.1:80');
    assert.equal(authorityOf('::1', 80), '[::1]:80');
  });
  it('quotes a host that is not an RFC 7230 token, escaping quotes and backslashes', () => {
    assert.equal(forwardedFor('10.0.0.1', 1, 'a.b'), 'for="10.0.0.1:1";host=a.b');
    assert.equal(forwardedFor('10.0.0.1', 1, 'a b"\\'), 'for="10.0.0.1:1";host="a b\\"\\\\"');
    assert.equal(forwardedFor('10.0.0.1', 1, ''), 'for="10.0.0.1:1"');
  });
});
