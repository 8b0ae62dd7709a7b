/**
 * The service definition embedded in src/identity/istio-ca/descriptor.ts (run time ships no .proto
 * file) against the Apache-2.0 ca.proto kept next to it: the same method path, the same message
 * descriptors, and bytes one encodes the other decodes.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import type { MethodDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ISTIO_CERTIFICATE_SERVICE, istioCertificateService, LOADER_OPTIONS, type IstioCertificateRequest, type IstioCertificateResponse } from '../../src/identity/istio-ca/descriptor.ts';

const protoFile = fileURLToPath(new URL('../../src/identity/istio-ca/ca.proto', import.meta.url));

type Method = MethodDefinition<IstioCertificateRequest, IstioCertificateResponse> & {
  requestType: { type: unknown };
  responseType: { type: unknown };
};

describe('IstioCertificateService descriptor', () => {
  const fromProto = loadSync(protoFile, LOADER_OPTIONS)[ISTIO_CERTIFICATE_SERVICE] as unknown as Record<string, Method>;
  const embedded = istioCertificateService() as unknown as Record<string, Method>;

  it('has the one method of ca.proto, with the same path and message descriptors', () => {
    assert.deepEqual(Object.keys(embedded), Object.keys(fromProto));
    assert.deepEqual(Object.keys(embedded), ['CreateCertificate']);
    const a = embedded['CreateCertificate']!;
    const b = fromProto['CreateCertificate']!;
    assert.equal(a.path, '/istio.v1.auth.IstioCertificateService/CreateCertificate');
    assert.equal(a.path, b.path);
    assert.equal(a.requestStream, b.requestStream);
    assert.equal(a.responseStream, b.responseStream);
    assert.deepEqual(a.requestType.type, b.requestType.type);
    assert.deepEqual(a.responseType.type, b.responseType.type);
  });

  it('encodes what ca.proto decodes and back (Struct metadata, int64 validity)', () => {
    const a = embedded['CreateCertificate']!;
    const b = fromProto['CreateCertificate']!;
    const req: IstioCertificateRequest = {
      csr: '-----BEGIN CERTIFICATE REQUEST-----\n...',
      validity_duration: 86_400,
      metadata: { fields: { ClusterID: { stringValue: 'Kubernetes' } } },
    };
    const decoded = b.requestDeserialize(a.requestSerialize(req));
    assert.equal(decoded.csr, req.csr);
    assert.equal(decoded.validity_duration, 86_400);
    assert.equal(decoded.metadata?.fields['ClusterID']?.stringValue, 'Kubernetes');
    const res: IstioCertificateResponse = { cert_chain: ['leaf', 'intermediate', 'root'] };
    assert.deepEqual(a.responseDeserialize(b.responseSerialize(res)).cert_chain, res.cert_chain);
  });
});
