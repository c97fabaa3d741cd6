"""Tests for trustplane_ref against the vendored v1 conformance vectors.

Run: cd conformance/python && python3 -m unittest -v
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import unittest

import trustplane_ref as ref
from trustplane_ref import RefError

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "vectors", "v1")
SCRIPT = os.path.join(HERE, "trustplane_ref.py")

TRANSCRIPT_VECTORS = ("transcript-v1.json", "transcript-v1.ambiguous-query-headers.json")


def load(name: str) -> dict:
    with open(os.path.join(VECTORS, name), encoding="utf-8") as fh:
        return json.load(fh)


def input_from_vector(vec: dict) -> dict:
    """Builder input from raw_request + the transcript's non-derived fields.

    Query normalization, header hashes, body hash and time bucket are NOT
    taken from the vector: the reference recomputes them from raw_request.
    """
    raw, t = vec["raw_request"], vec["transcript"]
    return {
        "method": t["method"],
        "scheme": t["scheme"],
        "authority": t["authority"],
        "path": t["path"],
        "raw_query": raw["query"],
        "audience": t["audience"],
        "route_id": t["route_id"],
        "content_encoding": t["content_encoding"],
        "body_utf8": raw["body_utf8"],
        "headers": raw["headers"],
        "allow_list": t["headers"]["allow_list"],
        "passport_jti": t["passport_jti"],
        "nonce": t["nonce"],
        "issued_at": t["issued_at"],
        "key_binding": t["key_binding"],
    }


def base_input() -> dict:
    return input_from_vector(load("transcript-v1.json"))


class TranscriptVectors(unittest.TestCase):
    def test_transcript_vectors(self):
        for name in TRANSCRIPT_VECTORS:
            with self.subTest(vector=name):
                vec = load(name)
                got = ref.build_transcript(input_from_vector(vec))
                self.assertEqual(got["lines"], vec["canonical"]["lines"])
                self.assertEqual(len(got["lines"]), 20)
                self.assertEqual(got["sha256"], vec["canonical"]["sha256"])

    def test_derived_fields_match_vector(self):
        for name in TRANSCRIPT_VECTORS:
            with self.subTest(vector=name):
                vec = load(name)
                t = vec["transcript"]
                norm = ref.normalize_query(vec["raw_request"]["query"])
                self.assertEqual(norm, t["query_normalization"]["normalized"])
                self.assertEqual(ref.sha256_hex(norm.encode()), t["query_normalization"]["sha256"])
                self.assertEqual(t["query_sha256"], t["query_normalization"]["sha256"])
                self.assertEqual(
                    ref.sha256_hex(vec["raw_request"]["body_utf8"].encode()), t["body_sha256"]
                )
                self.assertEqual(t["issued_at"] // 20, t["time_bucket"])
                lines = ref.build_transcript(input_from_vector(vec))["lines"]
                selected = ",".join(
                    s["name"] + ":" + s["value_sha256"] for s in t["headers"]["selected"]
                )
                self.assertEqual(lines[13], "headers.selected=" + selected)

    def test_body_b64_and_given_digest_equivalent(self):
        vec = load("transcript-v1.json")
        want = vec["canonical"]["sha256"]
        inp = input_from_vector(vec)
        body = inp.pop("body_utf8").encode()
        self.assertEqual(
            ref.build_transcript(dict(inp, body_b64=base64.b64encode(body).decode()))["sha256"], want
        )
        self.assertEqual(
            ref.build_transcript(dict(inp, body_sha256=vec["transcript"]["body_sha256"]))["sha256"], want
        )

    def test_canonicalization_of_inputs(self):
        vec = load("transcript-v1.json")
        inp = input_from_vector(vec)
        inp.update(
            method=" post\t",
            scheme=" HTTPS ",
            authority="\u00a0Orders.Example ",
            content_encoding="  ",
            allow_list=[" X-TrustPlane-Nonce", "content-type", "CONTENT-TYPE", "", "  "],
            headers=[
                {"name": " content-type ", "value": " application/json\u3000"},
                {"name": "Content-Type", "value": "text/plain"},  # later duplicate ignored
                {"name": "x-trustplane-nonce", "value": "nonce-v1-001"},
            ],
        )
        got = ref.build_transcript(inp)
        self.assertEqual(got["lines"], vec["canonical"]["lines"])
        self.assertEqual(got["sha256"], vec["canonical"]["sha256"])

    def test_ascii_only_case_mapping(self):
        inp = base_input()
        inp.update(method="gEt\u00df", authority="\u212a.EXAMPLE:8443", allow_list=[], headers=[])
        lines = ref.build_transcript(inp)["lines"]
        self.assertEqual(lines[1], "method=GET\u00df")  # not "GETSS"
        self.assertEqual(lines[3], "authority=\u212a.example:8443")  # Kelvin sign kept
        self.assertEqual(lines[12], "headers.allow_list=")
        self.assertEqual(lines[13], "headers.selected=")

    def test_path_only_trimmed(self):
        inp = base_input()
        inp["path"] = " /A/%2e%2E/./b%20C "
        self.assertEqual(ref.build_transcript(inp)["lines"][4], "path=/A/%2e%2E/./b%20C")

    def test_time_bucket_floor(self):
        inp = base_input()
        for issued_at, bucket in ((1, 0), (19, 0), (20, 1), (1739999999, 86999999), (1740000019, 87000000)):
            inp["issued_at"] = issued_at
            lines = ref.build_transcript(inp)["lines"]
            self.assertEqual(lines[17], "issued_at=%d" % issued_at)
            self.assertEqual(lines[18], "time_bucket=%d" % bucket)


class BodyVectors(unittest.TestCase):
    def test_body_vectors(self):
        for v in load("body-sha256-v1.json")["vectors"]:
            with self.subTest(id=v["id"]):
                self.assertEqual(ref.sha256_hex(v["bytes_utf8"].encode("utf-8")), v["sha256"])
                inp = base_input()
                inp["body_utf8"] = v["bytes_utf8"]
                self.assertEqual(ref.build_transcript(inp)["lines"][14], "body_sha256=" + v["sha256"])

    def test_empty_body_default(self):
        inp = base_input()
        del inp["body_utf8"]
        self.assertEqual(ref.build_transcript(inp)["lines"][14], "body_sha256=" + ref.EMPTY_SHA256)


class QueryNormalization(unittest.TestCase):
    def test_spec_example(self):
        self.assertEqual(
            ref.normalize_query("z=last&a=2&a=10&space=a%20b&encoded=%7E&empty="),
            "a=10&a=2&empty=&encoded=~&space=a%20b&z=last",
        )

    def test_edge_cases(self):
        cases = {
            "": "",
            "   ": "",
            "?": "",
            " ?a=1 ": "a=1",
            "??a=1": "%3Fa=1",  # only ONE leading '?' is dropped
            "a": "a=",
            "a&&b": "=&a=&b=",  # empty segments are kept
            "&": "=&=",
            "a=1;b=2": "a=1%3Bb%3D2",  # ';' is data; split at first '=' only
            "a+b=c+d": "a%2Bb=c%2Bd",  # '+' stays '+'
            "k=%e2%82%ac": "k=%E2%82%AC",  # upper-case hex
            "k=\u20ac": "k=%E2%82%AC",  # raw non-ASCII re-encoded as UTF-8
            "k=%41%2d%5F%7e": "k=A-_~",  # unreserved bytes decoded
            "b=2&a=2&a=1&b=1": "a=1&a=2&b=1&b=2",
            "a=%20&a=%2B&a=": "a=&a=%20&a=%2B",
            "B=1&a=1&_=1&~=1&-=1&.=1&0=1": "-=1&.=1&0=1&B=1&_=1&a=1&~=1",
        }
        for raw, want in cases.items():
            with self.subTest(raw=raw):
                self.assertEqual(ref.normalize_query(raw), want)

    def test_bad_percent_escape(self):
        for raw in ("a=%zz", "a=%4", "a=%", "%=1", "a=%g1", "a=%\u0661\u0661", "a=%+1", "a=% 1"):
            with self.subTest(raw=raw):
                with self.assertRaises(RefError) as cm:
                    ref.normalize_query(raw)
                self.assertEqual(cm.exception.code, "invalid_query_percent_encoding")

    def test_invalid_utf8(self):
        for raw in ("a=%ff", "%C3=1", "a=%C3%28", "a=%ED%A0%80", "a=%C0%AF", "a=%E2%82"):
            with self.subTest(raw=raw):
                with self.assertRaises(RefError) as cm:
                    ref.normalize_query(raw)
                self.assertEqual(cm.exception.code, "invalid_query_utf8")

    def test_query_errors_surface_from_transcript(self):
        inp = base_input()
        inp["raw_query"] = "a=%zz"
        with self.assertRaises(RefError) as cm:
            ref.build_transcript(inp)
        self.assertEqual(cm.exception.code, "invalid_query_percent_encoding")


class TranscriptErrors(unittest.TestCase):
    def assertCode(self, inp, code):
        with self.assertRaises(RefError) as cm:
            ref.build_transcript(inp)
        self.assertEqual(cm.exception.code, code)

    def test_missing_allow_listed_header(self):
        inp = base_input()
        inp["allow_list"] = inp["allow_list"] + ["x-absent"]
        self.assertCode(inp, "missing_signed_header")

    def test_required_fields(self):
        for name in (
            "method", "scheme", "authority", "path", "audience", "route_id",
            "passport_jti", "nonce", "key_binding",
        ):
            for empty in ("", " \t\u00a0"):
                with self.subTest(field=name, value=empty):
                    inp = base_input()
                    inp[name] = empty
                    self.assertCode(inp, "missing_" + name)
            with self.subTest(field=name, value="absent"):
                inp = base_input()
                del inp[name]
                self.assertCode(inp, "missing_" + name)

    def test_issued_at(self):
        for bad in (0, -1, None, "1740000000", 1740000000.0, True):
            with self.subTest(issued_at=bad):
                inp = base_input()
                inp["issued_at"] = bad
                self.assertCode(inp, "missing_issued_at")

    def test_bad_input_shapes(self):
        for key, value, code in (
            ("method", 5, "invalid_input"),
            ("headers", {"a": "b"}, "invalid_input"),
            ("headers", [{"name": "a"}], "invalid_input"),
            ("allow_list", "content-type", "invalid_input"),
            ("body_b64", "!!!", "invalid_input"),  # both body_utf8 and body_b64
            ("nonce", "x\ud800", "invalid_unicode"),
        ):
            with self.subTest(key=key):
                inp = base_input()
                inp[key] = value
                self.assertCode(inp, code)
        inp = base_input()
        del inp["body_utf8"]
        inp["body_b64"] = "not base64!"
        self.assertCode(inp, "invalid_body_b64")

    def test_error_precedence(self):
        inp = base_input()
        inp.update(raw_query="a=%zz", method="", issued_at=0, allow_list=["x-absent"])
        self.assertCode(inp, "invalid_query_percent_encoding")
        inp["raw_query"] = ""
        self.assertCode(inp, "missing_method")
        inp["method"] = "GET"
        self.assertCode(inp, "missing_issued_at")
        inp["issued_at"] = 1
        self.assertCode(inp, "missing_signed_header")


class Trimming(unittest.TestCase):
    def test_whitespace_set_matches_interpreter(self):
        derived = frozenset(
            c for c in map(chr, range(sys.maxunicode + 1))
            if not ("\ud800" <= c <= "\udfff") and ("x" + c).strip() == "x"
        )
        self.assertEqual(derived, ref.PY_STRIP_WHITESPACE)
        self.assertNotIn("\ufeff", ref.PY_STRIP_WHITESPACE)


class Passport(unittest.TestCase):
    ARGS = {
        "issuer": "https://issuer.example",
        "subject": "spiffe://example.org/caller",
        "audience": "orders-api",
        "trust_domain": "example.org",
        "key_id": "issuer-key-1",
        "public_key_b64url": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        "iat": 1740000000,
        "ttl_seconds": 600,
        "jti": "jti-0001",
    }

    def test_software_passport_parts(self):
        header, claims = ref.software_passport_parts(**self.ARGS)
        self.assertEqual(list(header), ["alg", "kid", "typ"])
        self.assertEqual(header, {"alg": "EdDSA", "kid": "issuer-key-1", "typ": "JWT"})
        self.assertEqual(
            list(claims), ["iss", "sub", "aud", "iat", "exp", "jti", "trust_domain", "cnf"]
        )
        self.assertEqual(list(claims["cnf"]), ["kid", "public_key_b64url", "key_binding"])
        self.assertEqual(claims["exp"], 1740000600)
        self.assertEqual(claims["cnf"]["kid"], self.ARGS["public_key_b64url"])
        self.assertEqual(claims["cnf"]["key_binding"], "software")

    def test_signing_input_bytes(self):
        header, claims = ref.software_passport_parts(**self.ARGS)
        got = ref.passport_signing_input(header, claims)
        h, c = got.split(".")
        self.assertNotIn("=", got)

        def unb64(s):
            return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

        self.assertEqual(unb64(h), b'{"alg":"EdDSA","kid":"issuer-key-1","typ":"JWT"}')
        self.assertEqual(
            unb64(c),
            b'{"iss":"https://issuer.example","sub":"spiffe://example.org/caller",'
            b'"aud":"orders-api","iat":1740000000,"exp":1740000600,"jti":"jti-0001",'
            b'"trust_domain":"example.org","cnf":{"kid":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",'
            b'"public_key_b64url":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","key_binding":"software"}}',
        )

    def test_signing_input_non_ascii_is_raw_utf8(self):
        got = ref.passport_signing_input({"a": "\u00e9/\u2028"}, {"b": "\x01\"\\"})
        h, c = got.split(".")
        self.assertEqual(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)), '{"a":"\u00e9/\u2028"}'.encode())
        self.assertEqual(base64.urlsafe_b64decode(c + "=" * (-len(c) % 4)), b'{"b":"\\u0001\\"\\\\"}')

    def test_passport_errors(self):
        for patch, code in (
            ({"issuer": " "}, "missing_issuer"),
            ({"subject": " sub"}, "non_canonical_subject"),
            ({"key_id": ""}, "missing_kid"),
            ({"ttl_seconds": 0}, "invalid_passport_ttl"),
            ({"jti": "  "}, "missing_jti"),
            ({"iat": "1"}, "invalid_input"),
        ):
            with self.subTest(patch=patch):
                with self.assertRaises(RefError) as cm:
                    ref.software_passport_parts(**dict(self.ARGS, **patch))
                self.assertEqual(cm.exception.code, code)


class Cli(unittest.TestCase):
    def run_cli(self, lines):
        proc = subprocess.run(
            [sys.executable, SCRIPT],
            input="".join(l + "\n" for l in lines).encode("utf-8"),
            capture_output=True,
            check=True,
            timeout=60,
        )
        out = proc.stdout.decode("ascii").splitlines()
        self.assertEqual(len(out), len(lines))
        return [json.loads(l) for l in out]

    def test_protocol(self):
        vec = load("transcript-v1.json")
        args = Passport.ARGS
        header, claims = ref.software_passport_parts(**args)
        reqs = [
            {"id": 1, "op": "transcript", "input": input_from_vector(vec)},
            {"id": "q", "op": "normalize_query", "raw": "b=1&a=%7e"},
            {"id": 3, "op": "normalize_query", "raw": "a=%ff"},
            {"id": [4], "op": "passport_signing_input", "header": header, "claims": claims},
            {"id": 5, "op": "software_passport", "args": args},
            {"id": 6, "op": "nope"},
            {"id": 7, "op": "software_passport", "args": dict(args, extra=1)},
        ]
        lines = [json.dumps(r) for r in reqs] + ["not json", "", "[1]"]
        out = self.run_cli(lines)
        self.assertEqual(
            out[0],
            {"id": 1, "ok": True, "lines": vec["canonical"]["lines"], "sha256": vec["canonical"]["sha256"]},
        )
        self.assertEqual(out[1], {"id": "q", "ok": True, "normalized": "a=~&b=1"})
        self.assertEqual(out[2], {"id": 3, "ok": False, "error": "invalid_query_utf8"})
        signing_input = ref.passport_signing_input(header, claims)
        self.assertEqual(out[3], {"id": [4], "ok": True, "signing_input": signing_input})
        self.assertEqual(out[4], {"id": 5, "ok": True, "signing_input": signing_input})
        self.assertEqual(out[5], {"id": 6, "ok": False, "error": "unknown_op"})
        self.assertEqual(out[6], {"id": 7, "ok": False, "error": "invalid_input"})
        self.assertEqual(out[7], {"id": None, "ok": False, "error": "invalid_json"})
        self.assertEqual(out[8], {"id": None, "ok": False, "error": "invalid_json"})
        self.assertEqual(out[9], {"id": None, "ok": False, "error": "invalid_request"})

    def test_many_lines(self):
        inp = base_input()
        reqs = [json.dumps({"id": i, "op": "transcript", "input": dict(inp, issued_at=i + 1)}) for i in range(5000)]
        out = self.run_cli(reqs)
        self.assertEqual([o["id"] for o in out], list(range(5000)))
        self.assertTrue(all(o["ok"] for o in out))
        self.assertEqual(out[19]["lines"][18], "time_bucket=1")


if __name__ == "__main__":
    unittest.main()
