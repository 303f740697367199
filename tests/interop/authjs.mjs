// Bridge to the real Auth.js packages for tests/interop (keyfob.tokens compatibility proof).
// stdin: one JSON request, or an array of them; stdout: one JSON response, or an array.
//   {"op": "encode",    "payload": {...}, "secret": "s" | ["new", "old"], "salt": "...", "maxAge": 60}
//   {"op": "decode",    "token": "...",   "secret": ...,                   "salt": "..."}
//   {"op": "encode_v4", "payload": {...}, "secret": "s", "maxAge": 60}      (next-auth@4)
//   {"op": "decode_v4", "token": "...",   "secret": "s"}                    (next-auth@4)
//   {"op": "thumbprint", "key": "<base64url>", "hash": "sha512"}            (jose)
// A response is {"token": ...}, {"payload": ...}, {"thumbprint": ...} or {"error": "..."}.
import * as v5 from "@auth/core/jwt";
import { createRequire } from "node:module";
import { calculateJwkThumbprint } from "jose";

const require = createRequire(import.meta.url);
const v4 = require("next-auth/jwt");

async function handle(req) {
  try {
    switch (req.op) {
      case "encode":
        return { token: await v5.encode({ token: req.payload, secret: req.secret, salt: req.salt, maxAge: req.maxAge }) };
      case "decode":
        return { payload: await v5.decode({ token: req.token, secret: req.secret, salt: req.salt }) };
      case "encode_v4":
        return { token: await v4.encode({ token: req.payload, secret: req.secret, maxAge: req.maxAge }) };
      case "decode_v4":
        return { payload: await v4.decode({ token: req.token, secret: req.secret }) };
      case "thumbprint":
        return { thumbprint: await calculateJwkThumbprint({ kty: "oct", k: req.key }, req.hash) };
      default:
        return { error: `unknown op ${req.op}` };
    }
  } catch (err) {
    return { error: String(err?.code ?? err?.name ?? err) };
  }
}

let input = "";
for await (const chunk of process.stdin) input += chunk;
const request = JSON.parse(input);
const response = Array.isArray(request) ? await Promise.all(request.map(handle)) : await handle(request);
process.stdout.write(JSON.stringify(response));
