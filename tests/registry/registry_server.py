#!/usr/bin/env python3
"""registry_server.py - a small Confluent-compatible Schema Registry for
driftrec's tests (tests/registry/test_registry.c), standard library only.

It implements the documented REST subset driftrec's client uses, with
Confluent's JSON error bodies ({"error_code": N, "message": "..."}) and
content type application/vnd.schemaregistry.v1+json:

  GET  /schemas/ids/{id}                     {"schema": ...} (+ "schemaType" unless AVRO); 40403
  GET  /subjects                             ["s", ...]
  GET  /subjects/{s}/versions                [1, 2, ...]; 40401
  GET  /subjects/{s}/versions/{n|latest}     {"subject","id","version","schema"}; 40401 / 40402
  POST /subjects/{s}/versions {"schema"}     {"id": N}; 409 incompatible; 422 42201 invalid
  POST /subjects/{s} {"schema"}              lookup: {"subject","id","version","schema"}; 40401 / 40403
  GET|PUT /config, GET|PUT /config/{s}       {"compatibilityLevel"} / {"compatibility"}; 40408

Ids are global: the same schema text (canonicalised with json.loads and
json.dumps(sort_keys=True)) gets the same id in every subject. Only AVRO
schemas. Compatibility: NONE, BACKWARD (default), FORWARD, FULL and their
_TRANSITIVE forms, where a record schema can read data written with
another when every field of the reader that has no default exists in the
writer (Avro's rule for readers, minus type promotion and name checks), and
any other schema only when it is the same. BACKWARD: the new schema reads
the old; FORWARD: the old reads the new; FULL: both.

Options: --port N (0 = any; listens on 127.0.0.1 only and writes the port
on the first line of stdout), --basic-auth user:pass, --tls-cert F
--tls-key F (https), --preload ID:SUBJECT:FILE (repeatable; registers FILE's
schema under SUBJECT with exactly that id).

Fault injection, for the tests, on /_test/* (never behind basic auth and
never delayed or failed itself):
  POST /_test/fail {"status": 503, "count": N}  the next N requests answer that status
       (count -1: until cleared by count 0); optional "body" (sent verbatim instead of
       a Confluent error), "content_type", "location" (a Location header), "size"
       (a 200 body of that many bytes, for the client's response cap)
  POST /_test/delay {"ms": M}                   delays every answer by M ms
  GET  /_test/requests                          {"total": n, "<kind>": n, ...}
It exits on SIGTERM, and by itself when its parent process goes away.
"""

import argparse
import base64
import json
import os
import signal
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
LEVELS = {"NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE",
          "FULL", "FULL_TRANSITIVE"}


class RegistryError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Registry:
    """The registry's state; every method runs under self.lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.schemas = {}        # id -> {"schema": text, "canon": str}
        self.by_canon = {}       # canonical text -> id
        self.subjects = {}       # subject -> [id of version 1, id of version 2, ...]
        self.level = "BACKWARD"
        self.subject_level = {}  # subject -> level
        self.next_id = 1
        self.fail_status, self.fail_count, self.fail_body = 0, 0, None
        self.fail_content_type, self.fail_location, self.fail_size = None, None, 0
        self.delay_ms = 0
        self.requests = {"total": 0}

    @staticmethod
    def parse(text):
        """The parsed schema and its canonical text; 422 42201 when not Avro-ish."""
        try:
            doc = json.loads(text)
        except (ValueError, TypeError) as e:
            raise RegistryError(422, 42201, "Invalid schema: %s" % e)
        if isinstance(doc, dict):
            if "type" not in doc:
                raise RegistryError(422, 42201, "Invalid schema: no \"type\"")
            if doc["type"] == "record" and not isinstance(doc.get("fields"), list):
                raise RegistryError(422, 42201, "Invalid schema: a record needs \"fields\"")
        elif not isinstance(doc, (list, str)):
            raise RegistryError(422, 42201, "Invalid schema: not a JSON object, array or string")
        return doc, json.dumps(doc, sort_keys=True, separators=(",", ":"))

    def add(self, subject, text, schema_id=None):
        """Registers text under subject; returns its id (the old one when known)."""
        doc, canon = self.parse(text)
        versions = self.subjects.get(subject, [])
        known = self.by_canon.get(canon)
        if known is not None and known in versions:
            return known
        level = self.subject_level.get(subject, self.level)
        if versions and level != "NONE":
            older = versions if level.endswith("_TRANSITIVE") else versions[-1:]
            for old_id in older:
                old = json.loads(self.schemas[old_id]["canon"])
                problem = None
                if level.startswith(("BACKWARD", "FULL")):
                    problem = read_problem(doc, old)
                if not problem and level.startswith(("FORWARD", "FULL")):
                    problem = read_problem(old, doc, "old", "new")
                if problem:
                    raise RegistryError(
                        409, 409, "Schema being registered is incompatible with an earlier "
                        "schema for subject \"%s\", details: [%s] (compatibility %s)"
                        % (subject, problem, level))
        if known is None:
            known = schema_id if schema_id is not None else self.next_id
            self.schemas[known] = {"schema": text, "canon": canon}
            self.by_canon[canon] = known
            self.next_id = max(self.next_id, known + 1)
        self.subjects.setdefault(subject, []).append(known)
        return known

    def version_of(self, subject, version):
        versions = self.subjects.get(subject)
        if not versions:
            raise RegistryError(404, 40401, "Subject '%s' not found." % subject)
        if version == "latest" or version == "-1":
            n = len(versions)
        else:
            try:
                n = int(version)
            except ValueError:
                raise RegistryError(422, 42202, "The specified version '%s' is not a valid "
                                    "version id." % version)
            if n < 1 or n > len(versions):
                raise RegistryError(404, 40402, "Version %s not found." % version)
        sid = versions[n - 1]
        return {"subject": subject, "id": sid, "version": n, "schema": self.schemas[sid]["schema"]}


def read_problem(reader, writer, reader_name="new", writer_name="old"):
    """Why a reader with schema `reader` cannot read data written with `writer`,
    or None. BACKWARD asks it of the new schema reading the old, FORWARD of the
    old reading the new."""
    if isinstance(reader, dict) and isinstance(writer, dict) and \
            reader.get("type") == "record" and writer.get("type") == "record":
        writer_fields = {f.get("name") for f in writer.get("fields", []) if isinstance(f, dict)}
        for f in reader.get("fields", []):
            if isinstance(f, dict) and "default" not in f and f.get("name") not in writer_fields:
                return "{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field " \
                       "'%s' at path '/fields/%s' in the %s schema has no default value and is " \
                       "missing in the %s schema'}" % (f.get("name"), f.get("name"), reader_name,
                                                        writer_name)
        return None
    if json.dumps(reader, sort_keys=True) != json.dumps(writer, sort_keys=True):
        return "{errorType:'TYPE_MISMATCH', description:'the schema is not a record and differs " \
               "from the old one'}"
    return None


REGISTRY = Registry()
OPTIONS = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client reuses its connection
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server_version = "dr-test-registry/1"

    def log_message(self, fmt, *args):
        if OPTIONS.verbose:
            sys.stderr.write("registry_server: " + (fmt % args) + "\n")

    def send(self, status, body, content_type=CONTENT_TYPE, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True  # the client gave up (its timeout); nothing to do

    def send_error_body(self, status, code, message, headers=()):
        self.send(status, {"error_code": code, "message": message}, headers=headers)

    def body(self):
        try:
            return json.loads(self.raw_body or b"{}")
        except ValueError:
            raise RegistryError(400, 400, "Unrecognized request body: not JSON")

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def handle_any(self, method):
        path = urllib.parse.urlsplit(self.path).path
        # Split before unquoting, so that an escaped '/' stays inside a subject name.
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")] if path != "/" else []
        # The body is read before anything can answer: on a kept-alive
        # connection an unread body would be taken for the next request.
        length = int(self.headers.get("Content-Length") or 0)
        self.raw_body = self.rfile.read(length) if length else b""
        try:
            if parts and parts[0] == "_test":
                return self.control(method, parts)
            self.count(parts)
            if not self.authorized():
                return self.send_error_body(401, 401, "Unauthorized",
                                            [("WWW-Authenticate", 'Basic realm="SchemaRegistry"')])
            if self.inject():
                return
            status, answer = self.route(method, parts)
            self.send(status, answer)
        except RegistryError as e:
            self.send_error_body(e.status, e.code, e.message)

    def count(self, parts):
        kind = parts[0] if parts else "root"
        if kind == "schemas" and len(parts) > 1:
            kind = "schemas_" + parts[1]
        with REGISTRY.lock:
            REGISTRY.requests["total"] += 1
            REGISTRY.requests[kind] = REGISTRY.requests.get(kind, 0) + 1
            delay = REGISTRY.delay_ms
        if delay:
            time.sleep(delay / 1000.0)

    def authorized(self):
        if not OPTIONS.basic_auth:
            return True
        expected = "Basic " + base64.b64encode(OPTIONS.basic_auth.encode()).decode()
        return self.headers.get("Authorization") == expected

    def inject(self):
        with REGISTRY.lock:
            if REGISTRY.fail_count == 0:
                return False
            if REGISTRY.fail_count > 0:
                REGISTRY.fail_count -= 1
            status, body, size = REGISTRY.fail_status, REGISTRY.fail_body, REGISTRY.fail_size
            ctype, location = REGISTRY.fail_content_type, REGISTRY.fail_location
        headers = [("Location", location)] if location else []
        if status == 429 or status == 503:
            headers.append(("Retry-After", "1"))
        if size:
            self.send(status, b"{" + b" " * max(size - 2, 0) + b"}", ctype or CONTENT_TYPE, headers)
        elif body is not None:
            self.send(status, body.encode(), ctype or CONTENT_TYPE, headers)
        else:
            code = {500: 50001, 503: 50003}.get(status, status)
            self.send(status, {"error_code": code, "message": "injected failure (HTTP %d)" % status},
                      headers=headers)
        return True

    def control(self, method, parts):
        req = self.body()
        with REGISTRY.lock:
            if method == "POST" and parts == ["_test", "fail"]:
                REGISTRY.fail_status = int(req.get("status", 503))
                REGISTRY.fail_count = int(req.get("count", 1))
                REGISTRY.fail_body = req.get("body")
                REGISTRY.fail_content_type = req.get("content_type")
                REGISTRY.fail_location = req.get("location")
                REGISTRY.fail_size = int(req.get("size", 0))
                answer = {"ok": True}
            elif method == "POST" and parts == ["_test", "delay"]:
                REGISTRY.delay_ms = int(req.get("ms", 0))
                answer = {"ok": True}
            elif method == "GET" and parts == ["_test", "requests"]:
                answer = dict(REGISTRY.requests)
            else:
                raise RegistryError(404, 404, "HTTP 404 Not Found")
        self.send(200, answer)

    def route(self, method, parts):
        n = len(parts)
        with REGISTRY.lock:
            if method == "GET" and n == 3 and parts[:2] == ["schemas", "ids"]:
                try:
                    entry = REGISTRY.schemas.get(int(parts[2]))
                except ValueError:
                    entry = None
                if entry is None:
                    raise RegistryError(404, 40403, "Schema %s not found" % parts[2])
                return 200, {"schema": entry["schema"]}  # AVRO only: no "schemaType"
            if method == "GET" and parts == ["subjects"]:
                return 200, sorted(REGISTRY.subjects)
            if n >= 2 and parts[0] == "subjects":
                return self.subject_route(method, parts)
            if parts and parts[0] == "config" and n <= 2:
                return self.config_route(method, parts)
        raise RegistryError(404, 404, "HTTP 404 Not Found")

    def subject_route(self, method, parts):
        subject, n = parts[1], len(parts)
        if method == "GET" and n == 3 and parts[2] == "versions":
            if subject not in REGISTRY.subjects:
                raise RegistryError(404, 40401, "Subject '%s' not found." % subject)
            return 200, list(range(1, len(REGISTRY.subjects[subject]) + 1))
        if method == "GET" and n == 4 and parts[2] == "versions":
            return 200, REGISTRY.version_of(subject, parts[3])
        if method == "POST" and n in (2, 3) and (n == 2 or parts[2] == "versions"):
            req = self.body()
            text = req.get("schema") if isinstance(req, dict) else None
            if not isinstance(text, str):
                raise RegistryError(422, 42201, "Invalid schema: no \"schema\" string")
            if req.get("schemaType", "AVRO") != "AVRO":
                raise RegistryError(422, 42201, "Invalid schema type %s: this test registry "
                                    "knows only AVRO" % req.get("schemaType"))
            if n == 3:
                return 200, {"id": REGISTRY.add(subject, text)}
            _, canon = REGISTRY.parse(text)
            versions = REGISTRY.subjects.get(subject)
            if not versions:
                raise RegistryError(404, 40401, "Subject '%s' not found." % subject)
            sid = REGISTRY.by_canon.get(canon)
            if sid not in versions:
                raise RegistryError(404, 40403, "Schema not found")
            return 200, REGISTRY.version_of(subject, str(versions.index(sid) + 1))
        raise RegistryError(404, 404, "HTTP 404 Not Found")

    def config_route(self, method, parts):
        subject = parts[1] if len(parts) == 2 else None
        if method == "GET":
            if subject is None:
                return 200, {"compatibilityLevel": REGISTRY.level}
            if subject not in REGISTRY.subject_level:
                raise RegistryError(404, 40408, "Subject '%s' does not have subject-level "
                                    "compatibility configured" % subject)
            return 200, {"compatibilityLevel": REGISTRY.subject_level[subject]}
        if method == "PUT":
            level = self.body().get("compatibility")
            if level not in LEVELS:
                raise RegistryError(422, 42203, "Invalid compatibility level %s" % level)
            if subject is None:
                REGISTRY.level = level
            else:
                REGISTRY.subject_level[subject] = level
            return 200, {"compatibility": level}
        raise RegistryError(405, 405, "HTTP 405 Method Not Allowed")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    tls = None

    def finish_request(self, request, client_address):
        # The TLS handshake runs here, in the connection's thread, so a client
        # that rejects our certificate or stalls does not hold up accept().
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        if OPTIONS.verbose:
            super().handle_error(request, client_address)


def preload(spec):
    try:
        sid, subject, path = spec.split(":", 2)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        REGISTRY.add(subject, text, int(sid))
    except (ValueError, OSError, RegistryError) as e:
        sys.exit("registry_server: --preload %s: %s" % (spec, getattr(e, "message", e)))


def watch_parent(parent):
    # A test killed before it could stop us must not leave a server behind.
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main():
    global OPTIONS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--basic-auth", default="")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--preload", action="append", default=[])
    ap.add_argument("--verbose", action="store_true")
    OPTIONS = ap.parse_args()
    if OPTIONS.basic_auth and ":" not in OPTIONS.basic_auth:
        sys.exit("registry_server: --basic-auth must be user:pass")
    for spec in OPTIONS.preload:
        preload(spec)
    server = Server(("127.0.0.1", OPTIONS.port), Handler)
    if OPTIONS.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(OPTIONS.tls_cert, OPTIONS.tls_key)
        server.tls = ctx
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
