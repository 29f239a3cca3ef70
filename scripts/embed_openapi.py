#!/usr/bin/env python3
"""Build step: openapi/openapi.yaml -> a C source holding the spec as YAML (as written) and as
JSON (converted), so aetherisd serves /openapi.yaml and /openapi.json from its own binary.
Fails (exit 1, message on stderr) when the YAML does not parse or is not an OpenAPI 3.1
document with paths, so a broken spec breaks the build.
Usage: embed_openapi.py <openapi.yaml> <output.c>"""
import json
import sys

import yaml


def c_bytes(name, data):
    rows = [", ".join(str(b) for b in data[i:i + 24]) for i in range(0, len(data), 24)]
    body = ",\n    ".join(rows)
    return (f"const unsigned char {name}[] = {{\n    {body}{',' if rows else ''} 0\n}};\n"
            f"const size_t {name}_len = {len(data)};\n")


def main():
    src, out = sys.argv[1], sys.argv[2]
    with open(src, "rb") as f:
        text = f.read()
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as e:
        sys.exit(f"embed_openapi: {src} is not valid YAML: {e}")
    if not isinstance(spec, dict) or not str(spec.get("openapi", "")).startswith("3.1") \
            or not isinstance(spec.get("paths"), dict):
        sys.exit(f"embed_openapi: {src} is not an OpenAPI 3.1 document with paths")
    as_json = json.dumps(spec, separators=(",", ":"), ensure_ascii=False).encode()
    with open(out, "w") as f:
        f.write("/* Generated from openapi/openapi.yaml by scripts/embed_openapi.py: do not edit. */\n"
                "#include \"openapi_spec.h\"\n\n")
        f.write(c_bytes("openapi_yaml", text))
        f.write(c_bytes("openapi_json", as_json))


if __name__ == "__main__":
    main()
