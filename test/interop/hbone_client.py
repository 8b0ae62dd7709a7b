#!/usr/bin/python3
"""An HBONE client built on python3-h2 (Debian), sending exactly what ztunnel sends.

TLS 1.3 only, ALPN h2, no SNI, a client certificate; the server is verified by chain plus an exact
URI SAN match (no hostname check), as ztunnel does. One CONNECT with only :method and :authority
as pseudo-headers, plus ztunnel's baggage, forwarded and traceparent headers. When the answer is
200 it sends the payload, half-closes, and reads the echo to the end.

Usage: hbone_client.py HOST PORT CERT KEY CA AUTHORITY SERVER_SPIFFE_ID PAYLOAD_BYTES SEED
Prints one JSON object: {"status", "alpn", "tls", "sent_sha256", "echo_sha256", "echo_bytes", "reset"}.
"""
import hashlib
import json
import random
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events
import h2.settings

MIB = 1024 * 1024


def main() -> None:
    host, port, cert, key, ca, authority, server_id, size, seed = sys.argv[1:10]
    payload = random.Random(int(seed)).randbytes(int(size))

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # ztunnel checks the SPIFFE URI SAN, not a hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])

    raw = socket.create_connection((host, int(port)), timeout=10)
    tls = ctx.wrap_socket(raw, server_hostname=None)  # no SNI
    alpn, version = tls.selected_alpn_protocol(), tls.version()
    uris = [v for (k, v) in tls.getpeercert().get("subjectAltName", ()) if k == "URI"]
    if server_id not in uris:
        raise SystemExit(f"server identity mismatch: {uris}")

    # h2 4.1 insists on :path for every request; RFC 9113 §8.5 forbids it on CONNECT, and ztunnel
    # omits it, so outbound validation is off (the headers below are exactly ztunnel's).
    config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8", validate_outbound_headers=False)
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    # ztunnel's windows: 4 MiB per stream, 16 MiB per connection; 1 MiB frames.
    conn.update_settings({
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 4 * MIB,
        h2.settings.SettingCodes.MAX_FRAME_SIZE: MIB,
        h2.settings.SettingCodes.ENABLE_PUSH: 0,
    })
    conn.increment_flow_control_window(16 * MIB - 65535)
    tls.sendall(conn.data_to_send())

    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [
        (":method", "CONNECT"),
        (":authority", authority),
        ("baggage", "k8s.cluster.name=Kubernetes,k8s.namespace.name=prod,k8s.deployment.name=web,service.name=web,service.version=v1"),
        ("forwarded", 'for="10.0.0.5:43122";host=api.prod.svc.cluster.local'),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
    ])
    tls.sendall(conn.data_to_send())

    status = None
    echo = bytearray()
    to_send = memoryview(payload)
    sent_end = False
    done = False
    reset = None
    while not done:
        # Send as much as flow control allows once the tunnel is open.
        if status == 200 and not sent_end:
            while to_send:
                window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if window <= 0:
                    break
                chunk, to_send = to_send[:window], to_send[window:]
                conn.send_data(sid, bytes(chunk))
            if not to_send:
                conn.end_stream(sid)
                sent_end = True
            tls.sendall(conn.data_to_send())
        data = tls.recv(65536)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                status = int(dict(ev.headers)[":status"])
                if status != 200:
                    done = True
            elif isinstance(ev, h2.events.DataReceived):
                echo.extend(ev.data)
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                if status == 200:
                    done = True
            elif isinstance(ev, h2.events.StreamReset):
                reset = ev.error_code
                done = True
        tls.sendall(conn.data_to_send())

    conn.close_connection()
    try:
        tls.sendall(conn.data_to_send())
        tls.close()
    except OSError:
        pass
    print(json.dumps({
        "status": status,
        "alpn": alpn,
        "tls": version,
        "sent_sha256": hashlib.sha256(payload).hexdigest(),
        "echo_sha256": hashlib.sha256(echo).hexdigest(),
        "echo_bytes": len(echo),
        "reset": int(reset) if reset is not None else None,
    }))


if __name__ == "__main__":
    main()
