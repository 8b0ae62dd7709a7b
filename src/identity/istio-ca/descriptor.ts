/**
 * istiod's certificate service, `istio.v1.auth.IstioCertificateService` (the definitions of
 * ca.proto next to this file, Apache-2.0, Copyright Istio Authors), embedded as protobuf.js JSON so
 * that nothing but compiled JavaScript is needed at run time (the package ships `dist/src` only).
 * test/identity/istio-ca-descriptor.test.ts checks that this JSON and ca.proto describe the same
 * messages and method.
 *
 * Field names keep the proto's snake case (`cert_chain`, `validity_duration`); `int64` values are
 * JavaScript numbers (a validity in seconds is far below 2^53).
 */
import type { ServiceDefinition } from '@grpc/grpc-js';
import { fromJSON, type Options } from '@grpc/proto-loader';

/** protobuf.js's INamespace, as proto-loader's fromJSON takes it (protobufjs itself is not a direct dependency). */
type ProtoJson = Parameters<typeof fromJSON>[0];

/** The fully qualified service name, as in the gRPC path `/istio.v1.auth.IstioCertificateService/CreateCertificate`. */
export const ISTIO_CERTIFICATE_SERVICE = 'istio.v1.auth.IstioCertificateService';

/** The request, as grpc-js serializes it with {@link LOADER_OPTIONS}. */
export interface IstioCertificateRequest {
  /** PEM certificate signing request. */
  csr: string;
  /** Requested lifetime in seconds; 0 lets istiod choose (its default is 24 h). */
  validity_duration: number;
  /** google.protobuf.Struct, protobuf.js shape: `{ fields: { Name: { stringValue: '...' } } }`. */
  metadata?: { fields: Record<string, { stringValue: string }> };
}

/** The response: PEM certificates, the leaf first and the root last (one element may hold several PEM blocks). */
export interface IstioCertificateResponse {
  cert_chain: string[];
}

/** How messages map to JavaScript: snake-case fields, int64 as number, absent repeated fields as []. */
export const LOADER_OPTIONS: Options = { keepCase: true, longs: Number, defaults: true, arrays: true };

/** ca.proto as protobuf.js JSON (`Root.toJSON()`), with google/protobuf/struct.proto's messages it imports. */
export const CA_PROTO_JSON = {
  nested: {
    istio: {
      nested: {
        v1: {
          nested: {
            auth: {
              options: { go_package: 'istio.io/api/security/v1alpha1' },
              nested: {
                IstioCertificateRequest: {
                  fields: {
                    csr: { type: 'string', id: 1 },
                    validity_duration: { type: 'int64', id: 3 },
                    metadata: { type: 'google.protobuf.Struct', id: 4 },
                  },
                },
                IstioCertificateResponse: {
                  fields: {
                    cert_chain: { rule: 'repeated', type: 'string', id: 1 },
                  },
                },
                IstioCertificateService: {
                  methods: {
                    CreateCertificate: { requestType: 'IstioCertificateRequest', responseType: 'IstioCertificateResponse' },
                  },
                },
              },
            },
          },
        },
      },
    },
    google: {
      nested: {
        protobuf: {
          nested: {
            Struct: { fields: { fields: { keyType: 'string', type: 'Value', id: 1 } } },
            Value: {
              oneofs: { kind: { oneof: ['nullValue', 'numberValue', 'stringValue', 'boolValue', 'structValue', 'listValue'] } },
              fields: {
                nullValue: { type: 'NullValue', id: 1 },
                numberValue: { type: 'double', id: 2 },
                stringValue: { type: 'string', id: 3 },
                boolValue: { type: 'bool', id: 4 },
                structValue: { type: 'Struct', id: 5 },
                listValue: { type: 'ListValue', id: 6 },
              },
            },
            NullValue: { values: { NULL_VALUE: 0 } },
            ListValue: { fields: { values: { rule: 'repeated', type: 'Value', id: 1 } } },
          },
        },
      },
    },
  },
};

let cached: ServiceDefinition | undefined;

/** The grpc-js service definition (built once): for `makeGenericClientConstructor` and `server.addService`. */
export function istioCertificateService(): ServiceDefinition {
  if (!cached) {
    // protobuf.js's typings require `comment` on methods and lack map fields' `keyType`; the JSON is Root.toJSON()'s own shape.
    const pkg = fromJSON(CA_PROTO_JSON as unknown as ProtoJson, LOADER_OPTIONS);
    cached = pkg[ISTIO_CERTIFICATE_SERVICE] as ServiceDefinition;
  }
  return cached;
}
