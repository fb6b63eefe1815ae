/**
 * DPoP (RFC 9449), JWT client authentication (RFC 7523) and the `fetch` command, against the mock
 * issuer made DPoP-aware by a fetch wrapper (it checks proofs at the token endpoint, asks for a
 * nonce, binds tokens to the key's thumbprint) and a resource server of our own that checks every
 * proof the way RFC 9449 §7 and §8 say: htm, htu, iat, jti, ath, the key's thumbprint against the
 * token's binding, and its nonce.
 *
 * @module
 */
import { type ServedMock, serveMockIssuer } from "./mock_issuer.ts";
import { assertNoLeaks, cleanUp, json, type Run, run, type RunOptions, scriptedBrowser } from "./_harness.ts";
import { assert, assertEquals, assertMatch, assertNotMatch, assertStringIncludes } from "./assert.ts";

// ── JOSE helpers (the test's own, independent of oauth4webapi) ──────────────────────────────────

const encoder = new TextEncoder();

function b64url(bytes: Uint8Array | string): string {
  const data = typeof bytes === "string" ? encoder.encode(bytes) : bytes;
  let binary = "";
  for (const byte of data) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromB64url(text: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
}

async function sha256(text: string): Promise<string> {
  return b64url(new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text))));
}

/** RFC 7638 JWK thumbprint of an EC key. */
function thumbprint(jwk: JsonWebKey): Promise<string> {
  return sha256(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }));
}

interface Proof {
  header: { typ?: string; alg?: string; jwk?: JsonWebKey };
  payload: { htm?: string; htu?: string; iat?: number; jti?: string; ath?: string; nonce?: string };
  jkt: string;
}

/** Verifies a DPoP proof's signature with the key in its own header (RFC 9449 §4.3) and decodes it. */
async function verifyProof(jwt: string): Promise<Proof> {
  const [h, p, s] = jwt.split(".");
  const header = JSON.parse(new TextDecoder().decode(fromB64url(h)));
  const payload = JSON.parse(new TextDecoder().decode(fromB64url(p)));
  assertEquals(header.typ, "dpop+jwt");
  assertEquals(header.alg, "ES256");
  assertEquals(header.jwk.d, undefined, "the proof carries the public key only");
  const key = await crypto.subtle.importKey("jwk", header.jwk, { name: "ECDSA", namedCurve: "P-256" }, false, [
    "verify",
  ]);
  const ok = await crypto.subtle.verify(
    { name: "ECDSA", hash: "SHA-256" },
    key,
    fromB64url(s),
    encoder.encode(`${h}.${p}`),
  );
  assert(ok, "the proof's signature verifies with its jwk");
  return { header, payload, jkt: await thumbprint(header.jwk) };
}

/** Decodes a JWT's payload without verifying it. */
function claims(jwt: string): Record<string, unknown> {
  return JSON.parse(new TextDecoder().decode(fromB64url(jwt.split(".")[1])));
}

// ── A DPoP-aware issuer: the mock behind a fetch wrapper ────────────────────────────────────────

interface DpopIssuer {
  fetch: typeof fetch;
  /** Access and refresh tokens, with the thumbprint of the key each is bound to. */
  bound: Map<string, string>;
  /** Each token request's proof (undefined when none came). */
  proofs: (Proof | undefined)[];
  /** The nonce the token endpoint currently wants (undefined: none required). */
  nonce?: string;
  /** Client assertions received (private_key_jwt / client_secret_jwt). */
  assertions: string[];
  /** Each revocation request's proof (undefined when none came). */
  revocationProofs: (Proof | undefined)[];
}

/**
 * Wraps the mock's token endpoint: a request with a DPoP proof must carry `nonce` (else 400
 * use_dpop_nonce with a DPoP-Nonce header), and gets DPoP-bound tokens; a refresh token bound to a
 * key is refused with another key. Client assertions are recorded and stripped before the mock sees
 * the request (the mock then treats the client as public).
 */
function dpopIssuer(mock: ServedMock, options: { nonce?: string; requireDpop?: boolean } = {}): DpopIssuer {
  const state: DpopIssuer = {
    bound: new Map(),
    proofs: [],
    nonce: options.nonce,
    assertions: [],
    revocationProofs: [],
    fetch: async (input, init) => {
      const request = new Request(input, init);
      const url = new URL(request.url);
      if (url.origin === new URL(mock.issuer).origin && url.pathname === "/revoke") {
        const header = request.headers.get("dpop");
        const proof = header ? await verifyProof(header) : undefined;
        state.revocationProofs.push(proof);
        if (proof && state.nonce !== undefined && proof.payload.nonce !== state.nonce) {
          return json({ error: "use_dpop_nonce", error_description: "nonce" }, 400, { "dpop-nonce": state.nonce });
        }
        return await fetch(request);
      }
      if (url.origin !== new URL(mock.issuer).origin || url.pathname !== "/token") return await fetch(request);
      const form = new URLSearchParams(await request.clone().text());
      if (form.has("client_assertion")) {
        state.assertions.push(form.get("client_assertion")!);
        form.delete("client_assertion");
        form.delete("client_assertion_type");
      }
      const header = request.headers.get("dpop");
      const proof = header ? await verifyProof(header) : undefined;
      state.proofs.push(proof);
      if (!proof) {
        if (options.requireDpop) {
          return json({ error: "invalid_grant", error_description: "DPoP proof JWT not provided" }, 400);
        }
        return await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded", ...basic(request) },
          body: form,
        });
      }
      assertEquals(proof.payload.htm, "POST");
      assertEquals(proof.payload.htu, `${url.origin}${url.pathname}`);
      if (state.nonce !== undefined && proof.payload.nonce !== state.nonce) {
        return json(
          { error: "use_dpop_nonce", error_description: "Authorization server requires nonce in DPoP proof" },
          400,
          {
            "dpop-nonce": state.nonce,
          },
        );
      }
      const refresh = form.get("refresh_token");
      if (refresh && state.bound.has(refresh) && state.bound.get(refresh) !== proof.jkt) {
        return json({ error: "invalid_grant", error_description: "failed jkt verification" }, 400);
      }
      const response = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", ...basic(request) },
        body: form,
      });
      const body = await response.json();
      if (typeof body.access_token === "string") {
        body.token_type = "DPoP";
        state.bound.set(body.access_token, proof.jkt);
        if (typeof body.refresh_token === "string") state.bound.set(body.refresh_token, proof.jkt);
      }
      return json(body, response.status, state.nonce ? { "dpop-nonce": state.nonce } : {});
    },
  };
  return state;
}

function basic(request: Request): Record<string, string> {
  const authorization = request.headers.get("authorization");
  return authorization ? { authorization } : {};
}

// ── A resource server that checks DPoP proofs ───────────────────────────────────────────────────

interface ResourceServer {
  url: string;
  /** What it received, and how it answered. */
  log: { method: string; scheme: string; status: number; why?: string; body: string; headers: Headers }[];
  /** The nonce it wants in proofs (undefined: none). */
  nonce?: string;
  /** Answer every request 401 invalid_token (a token the API will never take). */
  refuseAll?: boolean;
  close(): Promise<void>;
}

/**
 * An API at `/api/me`. A token must be live at the mock (revoked or unknown ones get 401
 * invalid_token). A DPoP-bound token must come with the DPoP scheme and a proof whose htm, htu,
 * iat (±60 s), unused jti, ath and key thumbprint (the token's binding) are right, and with the
 * server's nonce (else 401 use_dpop_nonce and a DPoP-Nonce header).
 */
function resourceServer(mock: ServedMock, issuer: DpopIssuer, options: { nonce?: string } = {}): ResourceServer {
  const seen = new Set<string>();
  const controller = new AbortController();
  const log: ResourceServer["log"] = [];
  const rs: ResourceServer = {
    url: "",
    log,
    nonce: options.nonce,
    close: async () => {
      controller.abort();
      await server.finished;
    },
  };
  const refuse = (scheme: string, error: string, why: string, extra: Record<string, string> = {}) =>
    new Response(JSON.stringify({ error, why }), {
      status: 401,
      headers: {
        "content-type": "application/json",
        "www-authenticate": `${scheme} error="${error}", error_description="${why}"`,
        ...extra,
      },
    });
  const check = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    const [scheme = "", token = ""] = (request.headers.get("authorization") ?? "").split(" ");
    const live = mock.accessTokens.get(token);
    if (!live || rs.refuseAll) return refuse(scheme || "Bearer", "invalid_token", "unknown or revoked token");
    const jkt = issuer.bound.get(token);
    if (jkt) {
      if (scheme !== "DPoP") return refuse("DPoP", "invalid_token", "a DPoP-bound token needs the DPoP scheme");
      const header = request.headers.get("dpop");
      if (!header) return refuse("DPoP", "invalid_dpop_proof", "no proof");
      const proof = await verifyProof(header);
      const now = Math.floor(Date.now() / 1000);
      if (proof.payload.htm !== request.method) return refuse("DPoP", "invalid_dpop_proof", "htm");
      if (proof.payload.htu !== `${url.origin}${url.pathname}`) return refuse("DPoP", "invalid_dpop_proof", "htu");
      if (Math.abs(now - (proof.payload.iat ?? 0)) > 60) return refuse("DPoP", "invalid_dpop_proof", "iat");
      if (!proof.payload.jti || seen.has(proof.payload.jti)) {
        return refuse("DPoP", "invalid_dpop_proof", "jti replayed");
      }
      seen.add(proof.payload.jti);
      if (proof.payload.ath !== await sha256(token)) return refuse("DPoP", "invalid_dpop_proof", "ath");
      if (proof.jkt !== jkt) return refuse("DPoP", "invalid_token", "the proof's key is not the token's");
      if (rs.nonce !== undefined && proof.payload.nonce !== rs.nonce) {
        return refuse("DPoP", "use_dpop_nonce", "nonce", { "dpop-nonce": rs.nonce });
      }
    } else if (scheme !== "Bearer") return refuse("Bearer", "invalid_token", "scheme");
    return json({ sub: live.sub, method: request.method, query: url.search, body: await request.text() }, 200, {
      "x-api": "yes",
    });
  };
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen() {} },
    async (request) => {
      const bodyCopy = await request.clone().text();
      const response = await check(request);
      const scheme = (request.headers.get("authorization") ?? "").split(" ")[0];
      log.push({
        method: request.method,
        scheme,
        status: response.status,
        body: bodyCopy,
        headers: request.headers,
        why: response.status === 401 ? response.headers.get("www-authenticate") ?? "" : undefined,
      });
      return response;
    },
  );
  rs.url = `http://127.0.0.1:${server.addr.port}/api/me`;
  return rs;
}

// ── Fixtures ────────────────────────────────────────────────────────────────────────────────────

const SCOPE = "openid profile offline_access";

async function withWorld(
  fn: (world: { mock: ServedMock; issuer: DpopIssuer; rs: ResourceServer }) => Promise<void>,
  options: { tokenNonce?: string; rsNonce?: string; requireDpop?: boolean } = {},
): Promise<void> {
  const mock = serveMockIssuer();
  mock.metadata.dpop_signing_alg_values_supported = ["ES256"]; // a server that does DPoP says so (RFC 9449 §5.1)
  const issuer = dpopIssuer(mock, { nonce: options.tokenNonce, requireDpop: options.requireDpop });
  const rs = resourceServer(mock, issuer, { nonce: options.rsNonce });
  try {
    await fn({ mock, issuer, rs });
  } finally {
    await rs.close();
    await mock.close();
  }
}

function base(mock: ServedMock, ...extra: string[]): string[] {
  return ["--issuer", mock.issuer, "--client-id", "cli-public", "--scope", SCOPE, ...extra];
}

async function dpopLogin(mock: ServedMock, issuer: DpopIssuer, extra: string[] = [], options: RunOptions = {}) {
  const result = await run(["login", ...base(mock, "--dpop", "--flow", "browser"), ...extra], {
    browser: (start) => scriptedBrowser(start),
    fetch: issuer.fetch,
    ...options,
  });
  assertEquals(result.code, 0, result.stderr);
  return result;
}

async function cacheEntry(result: Run): Promise<Record<string, unknown> & { path: string }> {
  const dir = `${result.home}/cache`;
  const names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".json"));
  assertEquals(names.length, 1, "one cache entry");
  const path = `${dir}/${names[0]}`;
  return { ...JSON.parse(await Deno.readTextFile(path)), path };
}

// ── Tests ───────────────────────────────────────────────────────────────────────────────────────

Deno.test("login --dpop: dpop_jkt on the authorization request, a proof with the server's nonce on the code exchange, the key and nonce kept in the entry", async () => {
  await withWorld(async ({ mock, issuer }) => {
    const result = await dpopLogin(mock, issuer);
    try {
      // The first exchange had no nonce and was answered use_dpop_nonce; the second carried it.
      assertEquals(issuer.proofs.length, 2, "one retry for the nonce");
      assertEquals(issuer.proofs[0]!.payload.nonce, undefined);
      assertEquals(issuer.proofs[1]!.payload.nonce, "nonce-1");
      const jkt = issuer.proofs[1]!.jkt;
      assertEquals(mock.calls("authorize")[0].query.dpop_jkt, jkt, "dpop_jkt is the key's thumbprint (RFC 9449 §10)");
      const entry = await cacheEntry(result);
      assertEquals(entry.tokenType, "DPoP");
      const key = entry.dpopKey as JsonWebKey;
      assertEquals(await thumbprint(key), jkt, "the entry keeps the key the tokens are bound to");
      assertEquals(typeof key.d, "string");
      assertEquals(entry.dpopNonces, { [new URL(mock.issuer).origin]: "nonce-1" });
      assertEquals((await Deno.stat(entry.path)).mode! & 0o777, 0o600, "owner-only, like every entry");
      assertNoLeaks(result, [key.d!, ...mock.accessTokens.keys()]);
    } finally {
      await cleanUp(result);
    }
  }, { tokenNonce: "nonce-1" });
});

Deno.test("token --json says DPoP; a refresh uses the same key and the remembered nonce (no extra round trip)", async () => {
  await withWorld(async ({ mock, issuer }) => {
    const login = await dpopLogin(mock, issuer);
    try {
      const shown = await run(["token", ...base(mock), "--format", "json"], { home: login.home, fetch: issuer.fetch });
      assertEquals(shown.code, 0, shown.stderr);
      assertEquals(JSON.parse(shown.stdout).token_type, "DPoP");
      const before = issuer.proofs.length;
      const later = Date.now() + 3 * 3600_000; // the access token has expired by then
      const refreshed = await run(["token", ...base(mock)], {
        home: login.home,
        fetch: issuer.fetch,
        now: () => later,
      });
      assertEquals(refreshed.code, 0, refreshed.stderr);
      assertEquals(issuer.proofs.length, before + 1, "one token request: the stored nonce was sent at once");
      const proof = issuer.proofs.at(-1)!;
      assertEquals(proof.payload.nonce, "nonce-1");
      assertEquals(proof.jkt, issuer.proofs[1]!.jkt, "the refresh is signed with the login's key");
      assertEquals(Math.abs(proof.payload.iat! - Math.floor(later / 1000)) <= 1, true, "iat follows the clock");
      assertEquals(issuer.bound.get(refreshed.stdout.trim()), proof.jkt, "the new access token is bound to the key");
    } finally {
      await cleanUp(login);
    }
  }, { tokenNonce: "nonce-1" });
});

Deno.test("a refresh with another key is refused: the session ends and the entry is removed", async () => {
  await withWorld(async ({ mock, issuer }) => {
    const login = await dpopLogin(mock, issuer);
    try {
      const entry = await cacheEntry(login);
      // Swap the key for another one: the refresh token stays bound to the first.
      const other = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
      const jwk = { ...await crypto.subtle.exportKey("jwk", other.privateKey), alg: "ES256" };
      const { path, ...rest } = entry;
      await Deno.writeTextFile(path, JSON.stringify({ ...rest, dpopKey: jwk }), { mode: 0o600 });
      const later = Date.now() + 3 * 3600_000;
      const result = await run(["token", ...base(mock)], { home: login.home, fetch: issuer.fetch, now: () => later });
      assertEquals(result.code, 4, result.stderr);
      assertEquals(result.stdout, "");
      assertStringIncludes(result.stderr, 'the server answered "invalid_grant" (failed jkt verification)');
      assertNoLeaks(result, [jwk.d!, (entry.dpopKey as JsonWebKey).d!]);
    } finally {
      await cleanUp(login);
    }
  });
});

Deno.test("token --format headers: Authorization: DPoP and a fresh proof for the method and URL, with ath and the stored nonce", async () => {
  await withWorld(async ({ mock, issuer, rs }) => {
    const login = await dpopLogin(mock, issuer);
    try {
      const now = Date.now() - 5_000;
      const target = `${rs.url}?q=1#frag`;
      const first = await run(["token", ...base(mock), "--format", "headers", "--method", "post", "--url", target], {
        home: login.home,
        fetch: issuer.fetch,
        now: () => now,
      });
      assertEquals(first.code, 0, first.stderr);
      const lines = first.stdout.split("\n");
      assertEquals(lines.length, 3, "two header lines and a final newline");
      const token = [...mock.accessTokens.keys()].at(-1)!;
      assertEquals(lines[0], `Authorization: DPoP ${token}`);
      const proof = await verifyProof(lines[1].replace(/^DPoP: /, ""));
      assertEquals(proof.payload.htm, "POST");
      assertEquals(proof.payload.htu, rs.url, "htu has neither query nor fragment (RFC 9449 §4.2)");
      assertEquals(proof.payload.iat, Math.floor(now / 1000));
      assertEquals(proof.payload.ath, await sha256(token));
      assertMatch(proof.payload.jti!, /^[\w-]{20,}$/);
      assertEquals(proof.jkt, issuer.bound.get(token));
      assertEquals(proof.payload.nonce, undefined, "no nonce is known for the API's origin yet");
      const second = await run(["token", ...base(mock), "--format", "headers", "--url", target], {
        home: login.home,
        fetch: issuer.fetch,
      });
      const again = await verifyProof(second.stdout.split("\n")[1].replace(/^DPoP: /, ""));
      assertEquals(again.payload.htm, "GET", "GET by default");
      assert(again.payload.jti !== proof.payload.jti, "a fresh jti each time");
      // The proof is accepted by the resource server as it is, the way curl -H @- sends it.
      const response = await fetch(rs.url, {
        headers: { authorization: lines[0].slice(15), dpop: second.stdout.split("\n")[1].slice(6) },
      });
      assertEquals(response.status, 200, await response.text());
    } finally {
      await cleanUp(login);
    }
  });
});

Deno.test("fetch: a DPoP-bound token reaches the API with a proof the resource server accepts, after one nonce challenge", async () => {
  await withWorld(async ({ mock, issuer, rs }) => {
    const login = await dpopLogin(mock, issuer);
    try {
      const result = await run(["fetch", ...base(mock), rs.url], { home: login.home, fetch: issuer.fetch });
      assertEquals(result.code, 0, result.stderr);
      assertEquals(JSON.parse(result.stdout).sub, mock.user.sub);
      assertEquals(result.stderr, "");
      assertEquals(rs.log.map((l) => [l.scheme, l.status]), [["DPoP", 401], ["DPoP", 200]]);
      assertStringIncludes(rs.log[0].why!, 'error="use_dpop_nonce"');
      // The API's nonce is remembered: the next fetch needs no challenge.
      const entry = await cacheEntry(login);
      assertEquals((entry.dpopNonces as Record<string, string>)[new URL(rs.url).origin], "rs-nonce");
      const next = await run(["fetch", ...base(mock), rs.url], { home: login.home, fetch: issuer.fetch });
      assertEquals(next.code, 0, next.stderr);
      assertEquals(rs.log.map((l) => l.status), [401, 200, 200]);
      // And curl users get the API's nonce in their proof too.
      const headers = await run(["token", ...base(mock), "--format", "headers", "--url", rs.url], {
        home: login.home,
      });
      assertEquals((await verifyProof(headers.stdout.split("\n")[1].slice(6))).payload.nonce, "rs-nonce");
      assertNoLeaks(result, [...mock.accessTokens.keys(), (entry.dpopKey as JsonWebKey).d!]);
    } finally {
      await cleanUp(login);
    }
  }, { rsNonce: "rs-nonce" });
});

Deno.test("the resource server refuses a DPoP-bound token sent as Bearer, and a replayed proof", async () => {
  await withWorld(async ({ mock, issuer, rs }) => {
    const login = await dpopLogin(mock, issuer);
    try {
      const token = [...mock.accessTokens.keys()].at(-1)!;
      const bearer = await fetch(rs.url, { headers: { authorization: `Bearer ${token}` } });
      await bearer.body?.cancel();
      assertEquals(bearer.status, 401, "a DPoP-bound token is no bearer token");
      const headers = await run(["token", ...base(mock), "--format", "headers", "--url", rs.url], {
        home: login.home,
        fetch: issuer.fetch,
      });
      const [authorization, proof] = headers.stdout.split("\n").map((l) => l.slice(l.indexOf(": ") + 2));
      const first = await fetch(rs.url, { headers: { authorization, dpop: proof } });
      await first.body?.cancel();
      assertEquals(first.status, 200);
      const replay = await fetch(rs.url, { headers: { authorization, dpop: proof } });
      assertEquals(replay.status, 401);
      assertStringIncludes(replay.headers.get("www-authenticate")!, "jti replayed");
      await replay.body?.cancel();
      // And a Bearer fetch through the tool? Not possible: the tool always proves a DPoP-bound token.
      const tool = await run(["fetch", ...base(mock), rs.url], { home: login.home, fetch: issuer.fetch });
      assertEquals(tool.code, 0, tool.stderr);
      assertEquals(rs.log.at(-1)!.scheme, "DPoP");
    } finally {
      await cleanUp(login);
    }
  });
});

Deno.test("fetch: a token revoked at the server gives 401 invalid_token, then one refresh and one retry", async () => {
  await withWorld(async ({ mock, issuer, rs }) => {
    const login = await dpopLogin(mock, issuer);
    try {
      const revoked = [...mock.accessTokens.keys()].at(-1)!;
      const response = await fetch(`${mock.issuer}/revoke`, {
        method: "POST",
        body: new URLSearchParams({ token: revoked, client_id: "cli-public" }),
      });
      await response.body?.cancel();
      assert(!mock.accessTokens.has(revoked));
      const refreshes = () => mock.calls("token").filter((c) => c.form.grant_type === "refresh_token").length;
      const result = await run(["fetch", ...base(mock), "--verbose", rs.url], {
        home: login.home,
        fetch: issuer.fetch,
      });
      assertEquals(result.code, 0, result.stderr);
      assertEquals(refreshes(), 1, "one refresh");
      assertEquals(rs.log.map((l) => l.status), [401, 200], "one retry");
      assertStringIncludes(
        result.stderr,
        "trace: the server refused the access token: refreshing it and sending once more",
      );
      assertStringIncludes(result.stderr, "HTTP 200 OK\n", "--verbose shows the status");
      assertEquals(JSON.parse(result.stdout).sub, mock.user.sub);
      const entry = await cacheEntry(login);
      assert(entry.accessToken !== revoked, "the new token is cached");
      assertNoLeaks(result, [...mock.accessTokens.keys(), revoked, (entry.dpopKey as JsonWebKey).d!]);

      // Refused again after the refresh: no loop, exit 1, the body still printed.
      rs.refuseAll = true;
      const refused = await run(["fetch", ...base(mock), rs.url], { home: login.home, fetch: issuer.fetch });
      assertEquals(refused.code, 1);
      assertEquals(rs.log.length, 4, "one more request, and one retry after the refresh, nothing else");
      assertStringIncludes(refused.stdout, '"error":"invalid_token"');
      assertStringIncludes(refused.stderr, 'with HTTP 401 ("invalid_token")');
    } finally {
      await cleanUp(login);
    }
  });
});

Deno.test("fetch with a Bearer token: -X, -H, -d @FILE, --include; non-2xx exits 1 with the body on stdout", async () => {
  await withWorld(async ({ mock, rs }) => {
    const login = await run(["login", ...base(mock, "--flow", "browser")], { browser: (s) => scriptedBrowser(s) });
    assertEquals(login.code, 0, login.stderr);
    try {
      const file = `${login.home}/body.json`;
      await Deno.writeTextFile(file, '{"a":1}');
      const result = await run(
        ["fetch", ...base(mock), "-X", "PUT", "-H", "X-Trace: 42", "-d", `@${file}`, "--include", `${rs.url}?x=1`],
        { home: login.home },
      );
      assertEquals(result.code, 0, result.stderr);
      const body = JSON.parse(result.stdout);
      assertEquals([body.method, body.query, body.body], ["PUT", "?x=1", '{"a":1}']);
      const seen = rs.log.at(-1)!;
      assertEquals(seen.scheme, "Bearer");
      assertEquals(seen.headers.get("x-trace"), "42");
      assertEquals(seen.headers.get("content-type"), "application/json");
      assertMatch(result.stderr, /^HTTP 200 OK\n(.+\n)*x-api: yes\n(.+\n)*\n$/);

      for (const token of [...mock.accessTokens.keys()]) mock.accessTokens.delete(token);
      mock.refreshTokens.clear();
      const refused = await run(["fetch", ...base(mock), rs.url], { home: login.home });
      assertEquals(refused.code, 4, "the refresh token is gone too: log in again");
      assertStringIncludes(refused.stderr, "error: The session has ended");
    } finally {
      await cleanUp(login);
    }
  });
});

Deno.test("fetch refuses what would leak the token: a plain-http remote URL, an Authorization header", async (t) => {
  const cases: [string[], RegExp][] = [
    [["fetch", "http://api.example.com/me"], /error: The URL "http:\/\/api\.example\.com\/me" is not an https URL/],
    [["fetch", "-H", "Authorization: Bearer x", "https://api.example.com/"], /is set by oauth-login itself/],
    [["fetch"], /error: No URL to fetch/],
    [["fetch", "https://a.example/", "https://b.example/"], /Unexpected argument "https:\/\/b\.example\/"/],
    [["token", "--format", "headers"], /The headers format needs --url/],
    [["login", "--client-auth", "private_key_jwt"], /"private_key_jwt" needs a private key/],
    [["login", "--resource", "not a uri"], /is not an absolute URI/],
  ];
  for (const [args, message] of cases) {
    await t.step(args.join(" "), async () => {
      const result = await run([...args, "--issuer", "https://issuer.example", "--client-id", "c"]);
      assertEquals(result.code, 2, result.stderr);
      assertMatch(result.stderr, message);
      assertEquals(result.stdout, "");
      await cleanUp(result);
    });
  }
});

// ── JWT client authentication ───────────────────────────────────────────────────────────────────

async function keyFile(dir: string, format: "pem" | "jwk", mode = 0o600) {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
  const path = `${dir}/client.${format}`;
  let secretText: string;
  if (format === "pem") {
    const der = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
    const b64 = btoa(String.fromCharCode(...der)).match(/.{1,64}/g)!.join("\n");
    secretText = b64.replace(/\n/g, "").slice(40, 80);
    await Deno.writeTextFile(path, `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`, { mode });
  } else {
    const jwk = { ...await crypto.subtle.exportKey("jwk", pair.privateKey), kid: "cli-key-1" };
    secretText = jwk.d!;
    await Deno.writeTextFile(path, JSON.stringify(jwk), { mode });
  }
  await Deno.chmod(path, mode);
  return { path, publicKey: pair.publicKey, secretText };
}

async function verifyAssertion(jwt: string, key: CryptoKey): Promise<Record<string, unknown>> {
  const [h, p, s] = jwt.split(".");
  const ok = await crypto.subtle.verify(
    { name: "ECDSA", hash: "SHA-256" },
    key,
    fromB64url(s),
    encoder.encode(`${h}.${p}`),
  );
  assert(ok, "the client assertion verifies with the client's public key");
  return { header: JSON.parse(new TextDecoder().decode(fromB64url(h))), ...claims(jwt) };
}

Deno.test("private_key_jwt: a PEM or JWK key signs the client assertion (aud the issuer, or the token endpoint)", async (t) => {
  for (const [format, audience] of [["pem", undefined], ["jwk", "token-endpoint"]] as const) {
    await t.step(`${format}${audience ? `, --assertion-audience ${audience}` : ""}`, async () => {
      await withWorld(async ({ mock, issuer }) => {
        const dir = await Deno.makeTempDir();
        const key = await keyFile(dir, format);
        try {
          const args = ["login", ...base(mock, "--flow", "browser", "--client-key", key.path, "--verbose")];
          if (audience) args.push("--assertion-audience", audience);
          const result = await run(args, { browser: (s) => scriptedBrowser(s), fetch: issuer.fetch });
          assertEquals(result.code, 0, result.stderr);
          assertEquals(issuer.assertions.length, 1);
          const assertion = await verifyAssertion(issuer.assertions[0], key.publicKey);
          assertEquals(assertion.iss, "cli-public");
          assertEquals(assertion.sub, "cli-public");
          assertEquals(assertion.aud, audience ? `${mock.issuer}/token` : mock.issuer);
          assertEquals((assertion.header as { kid?: string }).kid, format === "jwk" ? "cli-key-1" : undefined);
          assertStringIncludes(result.stderr, "client_assertion=");
          assertNoLeaks(result, [key.secretText, issuer.assertions[0]]);
          const entry = await cacheEntry(result);
          assertEquals(entry.authMethod, "private_key_jwt");
          assertNotMatch(
            JSON.stringify(entry),
            new RegExp(key.secretText.slice(0, 20)),
            "the client key is not cached",
          );
          await cleanUp(result);
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      });
    });
  }
});

Deno.test("private_key_jwt: a key file others can read is refused, like the cache, and never quoted", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const key = await keyFile(dir, "pem", 0o644);
    const result = await run([
      "login",
      "--issuer",
      "https://issuer.example",
      "--client-id",
      "c",
      "--client-key",
      key.path,
    ]);
    assertEquals(result.code, 2, result.stderr);
    assertStringIncludes(result.stderr, `error: The client key file "${key.path}" can be read by other users\n`);
    assertStringIncludes(result.stderr, `hint: make it private with: chmod 600 ${key.path}\n`);
    assertNoLeaks(result, [key.secretText]);
    await cleanUp(result);
    await Deno.writeTextFile(
      `${dir}/bad.pem`,
      "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n",
      {
        mode: 0o600,
      },
    );
    const mock = serveMockIssuer();
    try {
      const bad = await run(["login", ...base(mock, "--client-key", `${dir}/bad.pem`)]);
      assertEquals(bad.code, 2, bad.stderr);
      assertStringIncludes(bad.stderr, "is not an unencrypted PKCS#8 key");
      assertStringIncludes(bad.stderr, "hint: use a PEM PKCS#8 private key");
      await cleanUp(bad);
    } finally {
      await mock.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client_secret_jwt: an HS256 assertion over the client secret; the secret is never shown", async () => {
  await withWorld(async ({ mock, issuer }) => {
    const secret = "a-client-secret-for-the-jwt-test";
    const result = await run(
      ["login", ...base(mock, "--flow", "browser", "--client-auth", "client_secret_jwt", "-v")],
      {
        browser: (s) => scriptedBrowser(s),
        fetch: issuer.fetch,
        env: { OAUTH_CLIENT_SECRET: secret },
      },
    );
    assertEquals(result.code, 0, result.stderr);
    const [h, p, s] = issuer.assertions[0].split(".");
    const key = await crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
      "verify",
    ]);
    assert(
      await crypto.subtle.verify("HMAC", key, fromB64url(s), encoder.encode(`${h}.${p}`)),
      "HS256 over the secret",
    );
    assertEquals(claims(issuer.assertions[0]).aud, mock.issuer);
    assertNoLeaks(result, [secret, issuer.assertions[0]]);
    await cleanUp(result);
  });
});

Deno.test("a client that requires DPoP, without --dpop: one sentence and a hint that works", async () => {
  await withWorld(async ({ mock, issuer }) => {
    const result = await run(["login", ...base(mock, "--flow", "browser")], {
      browser: (s) => scriptedBrowser(s),
      fetch: issuer.fetch,
    });
    assertEquals(result.code, 1);
    assertStringIncludes(
      result.stderr,
      'error: Cannot exchange the authorization code: the server answered "invalid_grant" (DPoP proof JWT not provided)\n' +
        "hint: this client must use DPoP: pass --dpop (or set OAUTH_DPOP=1) and sign in again\n",
    );
    const retried = await dpopLogin(mock, issuer);
    await cleanUp(retried);
    await cleanUp(result);
  }, { requireDpop: true });
});

// ── More of the same, at the edges ──────────────────────────────────────────────────────────────

Deno.test("dpopAlgorithm: ES256 unless the server lists only others; none we can sign with is one clear error", async () => {
  const { dpopAlgorithm } = (await import("../login.ts")).testing;
  assertEquals(dpopAlgorithm(undefined), "ES256");
  assertEquals(dpopAlgorithm(["EdDSA", "ES256"]), "ES256");
  assertEquals(dpopAlgorithm(["EdDSA"]), "EdDSA");
  assertEquals(dpopAlgorithm(["PS256", "RS256"]), "PS256");
  let message = "";
  try {
    dpopAlgorithm(["HS256", "\u001b[31mX"]);
  } catch (error) {
    message = (error as Error).message;
  }
  assertEquals(message, "The server's DPoP algorithms (HS256, X) include none this tool can sign with", "sanitised");
});

Deno.test("login --dpop --flow device: the device-code polls carry proofs with the nonce; the tokens are DPoP-bound", async () => {
  await withWorld(async ({ mock, issuer }) => {
    mock.device.pending = 1;
    const result = await run(["login", ...base(mock, "--dpop", "--flow", "device")], {
      fetch: issuer.fetch,
      sleep: () => Promise.resolve(),
    });
    try {
      assertEquals(result.code, 0, result.stderr);
      const polls = mock.calls("token").filter((c) => c.form.grant_type?.endsWith("device_code"));
      assertEquals(polls.length, 2, "one pending answer, then the tokens");
      assertEquals(issuer.proofs.length, 3, "a nonce challenge, then two polls with proofs");
      assert(issuer.proofs.every((p) => p !== undefined), "every poll carried a proof");
      assertEquals(issuer.proofs.map((p) => p!.payload.nonce), [undefined, "n-dev", "n-dev"]);
      const entry = await cacheEntry(result);
      assertEquals(entry.tokenType, "DPoP");
      assertEquals(await thumbprint(entry.dpopKey as JsonWebKey), issuer.proofs[2]!.jkt);
    } finally {
      await cleanUp(result);
    }
  }, { tokenNonce: "n-dev" });
});

Deno.test("logout of a DPoP entry revokes with proofs (and the server's new nonce) and deletes the entry with its key", async () => {
  await withWorld(async ({ mock, issuer }) => {
    const login = await dpopLogin(mock, issuer);
    const entry = await cacheEntry(login);
    try {
      issuer.nonce = "nonce-2"; // the server moved on since the login: one use_dpop_nonce answer
      const result = await run(["logout", ...base(mock)], { home: login.home, fetch: issuer.fetch });
      assertEquals(result.code, 0, result.stderr);
      assertEquals(mock.revoked.sort(), [entry.accessToken, entry.refreshToken].sort());
      const proofs = issuer.revocationProofs;
      assertEquals(proofs.map((p) => p?.payload.nonce), ["nonce-1", "nonce-2", "nonce-2"]);
      for (const proof of proofs) {
        assertEquals([proof!.payload.htm, proof!.payload.htu, proof!.payload.ath], [
          "POST",
          `${mock.issuer}/revoke`,
          undefined,
        ]);
        assertEquals(proof!.jkt, await thumbprint(entry.dpopKey as JsonWebKey), "signed with the entry's key");
      }
      assertEquals([...Deno.readDirSync(`${login.home}/cache`)].filter((e) => e.name.endsWith(".json")), []);
      assertNoLeaks(result, [(entry.dpopKey as JsonWebKey).d!, ...mock.revoked]);
    } finally {
      await cleanUp(login);
    }
  }, { tokenNonce: "nonce-1" });
});

Deno.test("fetch -d @- sends stdin as the body; token --format headers with a Bearer token is one line", async () => {
  await withWorld(async ({ mock, rs }) => {
    const login = await run(["login", ...base(mock, "--flow", "browser")], { browser: (s) => scriptedBrowser(s) });
    assertEquals(login.code, 0, login.stderr);
    try {
      const result = await run(["fetch", ...base(mock), "-d", "@-", rs.url], {
        home: login.home,
        stdin: encoder.encode("a=1&b=2"),
      });
      assertEquals(result.code, 0, result.stderr);
      assertEquals(JSON.parse(result.stdout).method, "POST", "-d means POST");
      assertEquals(rs.log.at(-1)!.body, "a=1&b=2");
      assertEquals(rs.log.at(-1)!.headers.get("content-type"), "application/x-www-form-urlencoded");
      const headers = await run(["token", ...base(mock), "--format", "headers", "--url", rs.url], {
        home: login.home,
      });
      assertEquals(headers.stdout, `Authorization: Bearer ${[...mock.accessTokens.keys()][0]}\n`);
    } finally {
      await cleanUp(login);
    }
  });
});

Deno.test("invalid_grant at the code exchange from a server that offers DPoP, without --dpop: the hint names --dpop", async () => {
  await withWorld(async ({ mock, issuer }) => {
    mock.metadata.dpop_signing_alg_values_supported = ["ES256"];
    mock.intercept = (record) =>
      record.path === "/token"
        ? json({ error: "invalid_grant", error_description: "grant request is invalid" }, 400)
        : undefined;
    const result = await run(["login", ...base(mock, "--flow", "browser")], {
      browser: (s) => scriptedBrowser(s),
      fetch: issuer.fetch,
    });
    assertEquals(result.code, 1);
    assertStringIncludes(
      result.stderr,
      "hint: run the login again; if this client requires DPoP-bound tokens, pass --dpop (or set OAUTH_DPOP=1)\n",
    );
    await cleanUp(result);
  });
});

Deno.test("--resource twice: the code exchange names the first; token --resource for the second refreshes with it once, then reuses it", async () => {
  await withWorld(async ({ mock }) => {
    // The second resource is the API fetch calls below: a token goes only to its resource's origin.
    const rs = resourceServer(mock, dpopIssuer(mock));
    const [one, two] = ["https://api-one.example/", `${new URL(rs.url).origin}/`];
    const both = ["--resource", one, "--resource", two];
    const login = await run(["login", ...base(mock, "--flow", "browser"), ...both], {
      browser: (s) => scriptedBrowser(s),
    });
    try {
      assertEquals(login.code, 0, login.stderr);
      // The mock's request log keeps the last value of a repeated parameter: the second resource.
      assertEquals(mock.calls("authorize")[0].query.resource, two, "the resources go on the authorization request");
      assertEquals(mock.calls("token")[0].form.resource, one, "the code exchange names the first resource");
      const primary = (await cacheEntry(login)).accessToken;

      const forTwo = await run(["token", ...base(mock, "--resource", two)], { home: login.home });
      assertEquals(forTwo.code, 0, forTwo.stderr);
      const refreshes = mock.calls("token").filter((c) => c.form.grant_type === "refresh_token");
      assertEquals(refreshes.map((c) => c.form.resource), [two], "one refresh, for the second resource");
      assert(forTwo.stdout.trim() !== primary);
      const again = await run(["token", ...base(mock, "--resource", two)], { home: login.home });
      assertEquals(again.stdout, forTwo.stdout, "the second resource's token is kept");
      assertEquals(mock.calls("token").length, 2, "no more requests");
      const own = await run(["token", ...base(mock, ...both)], { home: login.home });
      assertEquals(own.stdout.trim(), primary, "the entry's own token is unchanged");
      const forOne = await run(["token", ...base(mock, "--resource", one)], { home: login.home });
      assertEquals(forOne.stdout.trim(), primary, "the first resource's token is the entry's own");
      const other = await run(["token", ...base(mock, "--resource", "https://api-three.example/")], {
        home: login.home,
      });
      assertEquals(other.code, 4, "a resource the login did not ask for is not logged in");
      // fetch with the second resource's token; revoked at the server, it is renewed for that resource.
      mock.accessTokens.delete(forTwo.stdout.trim());
      const fetched = await run(["fetch", ...base(mock, "--resource", two), rs.url], { home: login.home });
      assertEquals(fetched.code, 0, fetched.stderr);
      assertEquals(rs.log.map((l) => l.status), [401, 200]);
      const resources = mock.calls("token").filter((c) => c.form.grant_type === "refresh_token").map((c) =>
        c.form.resource
      );
      assertEquals(resources, [two, two], "the refused token was renewed for its own resource");
      const renewed = await run(["token", ...base(mock, "--resource", two)], { home: login.home });
      assert(renewed.stdout !== forTwo.stdout && mock.accessTokens.has(renewed.stdout.trim()));
      const logout = await run(["logout", ...base(mock, ...both)], { home: login.home });
      assertEquals(logout.code, 0, logout.stderr);
      assert(mock.revoked.includes(renewed.stdout.trim()), "logout revokes the other resource's token too");
      assert(mock.revoked.includes(primary as string));
    } finally {
      await cleanUp(login);
      await rs.close();
    }
  });
});

Deno.test("doctor: says whether the server offers DPoP and whether the client key is private and usable", async () => {
  await withWorld(async ({ mock }) => {
    mock.metadata.dpop_signing_alg_values_supported = ["ES256", "EdDSA"];
    const dir = await Deno.makeTempDir();
    try {
      const key = await keyFile(dir, "jwk");
      const good = await run(["doctor", ...base(mock, "--dpop", "--client-key", key.path)]);
      assertStringIncludes(good.stdout, "ok    discovery  DPoP (RFC 9449) is offered (ES256, EdDSA); on\n");
      assertStringIncludes(
        good.stdout,
        `ok    config     client key: ${key.path} is private and can sign (from flag)\n`,
      );
      assertNoLeaks(good, [key.secretText]);
      await cleanUp(good);
      await Deno.chmod(key.path, 0o640);
      const bad = await run(["doctor", ...base(mock, "--client-key", key.path)]);
      assertEquals(bad.code, 1);
      assertStringIncludes(bad.stdout, `fail  config     The client key file "${key.path}" can be read by other users`);
      await cleanUp(bad);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("token --dpop with a cached Bearer token: login required, not a token that is not DPoP-bound", async () => {
  await withWorld(async ({ mock }) => {
    const login = await run(["login", ...base(mock, "--flow", "browser")], { browser: (s) => scriptedBrowser(s) });
    assertEquals(login.code, 0, login.stderr);
    try {
      for (const command of ["token", "fetch"]) {
        const result = await run([command, ...base(mock, "--dpop"), ...(command === "fetch" ? [mock.issuer] : [])], {
          home: login.home,
        });
        assertEquals(result.code, 4, result.stderr);
        assertEquals(result.stdout, "");
        assertStringIncludes(result.stderr, `error: No DPoP-bound token is cached for ${mock.issuer}\n`);
      }
    } finally {
      await cleanUp(login);
    }
  });
});

Deno.test("private_key_jwt refused by the server (invalid_client): the hint names the key to check, not a secret", async () => {
  await withWorld(async ({ mock, issuer }) => {
    const dir = await Deno.makeTempDir();
    try {
      const key = await keyFile(dir, "jwk");
      mock.intercept = (record) =>
        record.path === "/token"
          ? json({ error: "invalid_client", error_description: "client authentication failed" }, 401)
          : undefined;
      const result = await run(["login", ...base(mock, "--flow", "browser", "--client-key", key.path)], {
        browser: (s) => scriptedBrowser(s),
        fetch: issuer.fetch,
      });
      assertEquals(result.code, 1);
      assertStringIncludes(
        result.stderr,
        'error: Cannot exchange the authorization code: the server answered "invalid_client" (client authentication failed)\n' +
          'hint: a client assertion signed with the key from --client-key was sent (private_key_jwt): check that its public half is registered for the client "cli-public" (and its kid), and --assertion-audience\n',
      );
      assertNoLeaks(result, [key.secretText]);
      await cleanUp(result);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});
