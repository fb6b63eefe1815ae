/**
 * Issue 19 §2, one way to reach a server: `fetch`'s requests to APIs go through the same sender as
 * the issuer's (loopback never proxied, a proxy's failure blamed on the proxy, a cap on the body, no
 * redirect followed), its answer reaches a terminal only as plain text and a pipe byte for byte, a
 * token goes only where it may (https, or plain http to this machine; the origin of the resource it
 * is for), an access token that is not RFC 6750 `b64token` syntax is never saved, printed or sent, and
 * a client assertion is addressed only to the server that receives it.
 *
 * Most cases run `main()` in-process against small stand-in servers and a planted cache entry; the
 * proxy cases for loopback run the tool as its own process, because Deno's fetch reads the proxy
 * variables from the process's own environment.
 *
 * @module
 */
import { EXIT, testing } from "../login.ts";
import { type ServedMock, serveMockIssuer } from "./mock_issuer.ts";
import { assertNoLeaks, cleanUp, run, type RunOptions, scriptedBrowser, signal } from "./_harness.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";

const { cacheKey } = testing;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ── Fixtures: a planted cache entry, stand-in servers ───────────────────────────────────────────

const ISSUER = "https://idp.example";
const CLIENT = "cli-public";
const TOKEN = "planted.access-token_0123456789~+/abc==";
const BASE = ["--issuer", ISSUER, "--client-id", CLIENT];

interface Planted {
  /** The issuer and scope of the login (default `ISSUER`, none). */
  issuer?: string;
  scope?: string;
  accessToken?: string;
  resources?: string[];
  resource?: string;
  resourceTokens?: Record<string, { accessToken: string; tokenType: string; expiresAt?: number }>;
  dpopKey?: JsonWebKey;
}

/**
 * Writes a fresh cache entry for `ISSUER` and `CLIENT` (with `resources`: the entry of a login with
 * those `--resource`s) into `home`'s cache, as a login would have left it. Returns the home.
 */
async function plant(options: Planted = {}, home?: string): Promise<string> {
  home ??= await Deno.makeTempDir({ prefix: "oauth-login-sender-" });
  const resources = options.resources ?? [];
  const params = resources.map((r): [string, string] => ["resource", r]);
  const issuer = options.issuer ?? ISSUER;
  const name = cacheKey({ issuer, clientId: CLIENT, scope: options.scope, params, profile: undefined });
  const now = Date.now();
  const entry = {
    version: 1,
    issuer,
    clientId: CLIENT,
    requestedScope: options.scope ?? "",
    accessToken: options.accessToken ?? TOKEN,
    tokenType: options.dpopKey ? "DPoP" : "Bearer",
    expiresAt: now + 3_600_000,
    issuedAt: now,
    authMethod: "none",
    metadata: { issuer, token_endpoint: `${issuer}/token` },
    ...(resources.length ? { resources, resource: options.resource ?? resources[0] } : {}),
    ...(options.resourceTokens ? { resourceTokens: options.resourceTokens } : {}),
    ...(options.dpopKey ? { dpopKey: options.dpopKey, dpopNonces: {} } : {}),
  };
  await Deno.mkdir(`${home}/cache`, { recursive: true, mode: 0o700 });
  await Deno.writeTextFile(`${home}/cache/${name}.json`, JSON.stringify(entry), { mode: 0o600 });
  return home;
}

/** A private ES256 JWK, as a `--dpop` login keeps it in the entry. */
async function dpopKey(): Promise<JsonWebKey> {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
  const { kty, crv, x, y, d } = await crypto.subtle.exportKey("jwk", pair.privateKey);
  return { kty, crv, x, y, d, alg: "ES256" };
}

interface Seen {
  method: string;
  path: string;
  authorization: string | null;
  dpop: boolean;
}

interface Api {
  /** `http://127.0.0.1:PORT` */
  origin: string;
  seen: Seen[];
  close(): Promise<void>;
}

/** An API on 127.0.0.1 that records each request and answers with `answer` (by default 200 and a line of JSON). */
function api(answer: (request: Request) => Response | Promise<Response> = () => Response.json({ ok: true })): Api {
  const seen: Seen[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const url = new URL(request.url);
    seen.push({
      method: request.method,
      path: url.pathname,
      authorization: request.headers.get("authorization"),
      dpop: request.headers.has("dpop"),
    });
    await request.body?.cancel();
    return await answer(request);
  });
  return { origin: `http://127.0.0.1:${server.addr.port}`, seen, close: () => server.shutdown() };
}

/** A stand-in proxy on 127.0.0.1: records what it is asked and refuses it (502, and so no tunnel). */
function proxyStandIn(): { url: string; seen: string[]; close(): Promise<void> } {
  const seen: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    seen.push(`${request.method} ${request.url} ${request.headers.get("authorization") ?? "-"}`);
    await request.body?.cancel();
    return new Response("the proxy cannot reach that host", { status: 502 });
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, seen, close: () => server.shutdown() };
}

/** `deno run -A login.ts ARGS` as its own process, with only `env` (and PATH, HOME, DENO_DIR) in its environment. */
async function tool(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const inherited: Record<string, string> = { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" };
  for (const name of ["HOME", "DENO_DIR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) inherited[name] = value;
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "-A", new URL("../login.ts", import.meta.url).pathname, ...args],
    clearEnv: true,
    env: { ...inherited, DENO_NO_UPDATE_CHECK: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const bound = setTimeout(() => child.kill("SIGKILL"), 30_000);
  try {
    const output = await child.output();
    return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
  } finally {
    clearTimeout(bound);
  }
}

/** Runs the command `args[0]` with BASE and the rest of `args`, on a planted home. */
function runOn(home: string, args: string[], options: RunOptions = {}) {
  return run([args[0], ...BASE, ...args.slice(1)], { home, ...options });
}

// ── 1: proxies ──────────────────────────────────────────────────────────────────────────────────

Deno.test("fetch to an API on 127.0.0.1 with HTTP_PROXY set goes direct: the proxy sees nothing, Bearer or DPoP (real process)", async (t) => {
  const proxy = proxyStandIn();
  const server = api();
  try {
    for (const kind of ["Bearer", "DPoP"] as const) {
      await t.step(kind, async () => {
        const home = await plant(kind === "DPoP" ? { dpopKey: await dpopKey() } : {});
        try {
          const result = await tool(["fetch", ...BASE, `${server.origin}/me`], {
            HTTP_PROXY: proxy.url,
            http_proxy: proxy.url,
            HTTPS_PROXY: proxy.url,
            ALL_PROXY: proxy.url,
            OAUTH_LOGIN_CACHE: `${home}/cache`,
          });
          assertEquals(proxy.seen, [], "nothing, and no token, reached the proxy");
          assertEquals(result.code, EXIT.ok, result.stderr);
          assertEquals(result.stdout, '{"ok":true}');
          const last = server.seen.at(-1)!;
          assertEquals(last.authorization, `${kind} ${TOKEN}`, "the API got the request and the token");
          assertEquals(last.dpop, kind === "DPoP", "with a proof for a DPoP-bound token");
        } finally {
          await Deno.remove(home, { recursive: true });
        }
      });
    }
  } finally {
    await server.close();
    await proxy.close();
  }
});

Deno.test("fetch to an API behind a proxy that fails: the message blames the proxy, never the API", async () => {
  const proxy = proxyStandIn();
  const home = await plant();
  try {
    const result = await runOn(home, ["fetch", "https://api.example/me"], { env: { HTTPS_PROXY: proxy.url } });
    assertEquals(proxy.seen, ["CONNECT http://api.example:443 -"], "a tunnel asked of the proxy, the token inside it");
    assertEquals(result.code, EXIT.failure);
    assertEquals(
      result.stderr,
      `error: Cannot reach api.example through the proxy ${proxy.url} (HTTPS_PROXY): the proxy answered with an error (unsuccessful tunnel) (GET https://api.example/me)\n` +
        "hint: the proxy could not reach api.example: check HTTPS_PROXY, or add the host to NO_PROXY\n",
    );
    assertEquals(result.stdout, "");
  } finally {
    await proxy.close();
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("a proxy variable that holds no proxy URL is named, never shown: login, doctor --json, fetch (red team, finding 4)", async (t) => {
  // Passwords with a character that should have been percent-encoded (the person's everyday mistake), and a bad port.
  const values = [
    "http://alice:Secr3t#1@proxy.corp:3128", // does not parse
    "alice:Secr3t/1@proxy.corp:3128", // no scheme, and does not parse
    "http://alice:31337#x@proxy.corp:3128", // parses: the host "alice", the port 31337 (the password)
    "http://alice:Secr3t?x@proxy.corp:3128", // parses: the host "alice", a query
    "http://alice:Secr3t@proxy.corp:99999", // a port out of range
  ];
  const error = "error: The proxy in HTTPS_PROXY is not a valid URL\n";
  const hint = 'hint: write it as http://HOST:PORT, or http://USER:PASSWORD@HOST:PORT with any "#", "/", "?" or "@" ' +
    "in the user name or password percent-encoded (%23, %2F, %3F, %40)\n";
  const home = await plant();
  try {
    for (const value of values) {
      await t.step(value.replace(/Secr3t|31337/, "…"), async () => {
        const env = { HTTPS_PROXY: value };
        const secret = value.match(/Secr3t|31337/)![0];
        const login = await run(["login", ...BASE], { env });
        assertEquals([login.code, login.stderr], [EXIT.usage, error + hint]);
        const doctor = await run(["doctor", ...BASE, "--json"], { env });
        const checks = JSON.parse(doctor.stdout).checks as { status: string; topic: string; message: string }[];
        const line = `${error.slice(7, -1)} (${hint.slice(6, -1)})`;
        assertEquals(checks.filter((c) => c.message.includes("HTTPS_PROXY")), [
          { status: "fail", topic: "discovery", message: line },
          { status: "fail", topic: "network", message: line },
          {
            status: "ok",
            topic: "network",
            message: `${ISSUER}: through the proxy in HTTPS_PROXY, which is not a valid URL`,
          },
        ]);
        const fetched = await runOn(home, ["fetch", "https://api.example/me"], { env });
        assertEquals([fetched.code, fetched.stderr], [EXIT.usage, error + hint]);
        for (const result of [login, doctor, fetched]) {
          assert(
            !(result.stdout + result.stderr).includes(secret),
            `the proxy's password was printed:\n${result.stderr}`,
          );
        }
        await cleanUp(login);
        await cleanUp(doctor); // `fetched` ran in the planted home, removed at the end
      });
    }
  } finally {
    await Deno.remove(home, { recursive: true }).catch(() => {});
  }
});

// ── 2: what fetch writes ────────────────────────────────────────────────────────────────────────

/** Bodies an API may send, by path: what a terminal must not get, and text that it may. */
const BODIES: Record<string, Uint8Array<ArrayBuffer>> = {
  "/title": encoder.encode('{"name":"\x1b]0;owned\x07\x1b[2J\x1b[1;31mred"}\n'), // OSC title, clear screen, colour
  "/csi": encoder.encode("plain \x9b31m text\n"), // the one-character CSI (C1)
  "/overwrite": encoder.encode("rm -rf ~\rls -l    \n"), // a carriage return that hides what came before
  "/bidi": encoder.encode("access = \u202e\u2066admin\u2069\u2066 // user\n"), // a bidirectional override
  "/bell": encoder.encode("ding\x07\n"),
  "/binary": new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0xff, 0xfe, 0x80, 0x01]),
  "/nul": encoder.encode('{"a":"\u0000"}'),
  "/latin1": new Uint8Array([0x63, 0x61, 0x66, 0xe9, 0x0a]), // "café" in Latin-1: not UTF-8
};

Deno.test("fetch on a terminal refuses escape sequences and binary data; to a pipe the same answers go byte for byte", async (t) => {
  const server = api((request) => new Response(BODIES[new URL(request.url).pathname]));
  const home = await plant();
  try {
    for (const [path, body] of Object.entries(BODIES)) {
      await t.step(path, async () => {
        const url = `${server.origin}${path}`;
        const terminal = await runOn(home, ["fetch", url], { stdoutIsTerminal: true });
        assertEquals(terminal.code, EXIT.failure);
        assertEquals(terminal.stdoutBytes.length, 0, "nothing reached the terminal");
        const what = ["/binary", "/nul", "/latin1"].includes(path)
          ? "is not text"
          : "holds terminal control characters";
        assertEquals(
          terminal.stderr,
          `error: The answer from ${new URL(url).host} (HTTP 200) ${what}, so it is not written to the terminal\n` +
            "hint: redirect it to a file (> FILE) or pipe it to a program (| less), which get it unchanged\n",
        );
        const pipe = await runOn(home, ["fetch", url]);
        assertEquals(pipe.code, EXIT.ok, pipe.stderr);
        assertEquals(pipe.stdoutBytes, body, "the pipe got the answer unchanged");
        assertEquals(pipe.stderr, "");
      });
    }
  } finally {
    await server.close();
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("fetch on a terminal: text passes as sent, and a last line gets its end so the next line starts on its own", async (t) => {
  const texts: Record<string, [string, string]> = {
    "/no-newline": ['{"id":7}', '{"id":7}\n'],
    "/newline": ['{"id":7}\n', '{"id":7}\n'],
    "/crlf-tab-unicode": ["a\tb\r\nnaïve ✓ 日本 \u200f\r\n", "a\tb\r\nnaïve ✓ 日本 \u200f\r\n"],
    "/empty": ["", ""],
  };
  const server = api((request) => {
    const path = new URL(request.url).pathname;
    return new Response(texts[path]?.[0] ?? "missing", { status: path === "/no-newline" ? 404 : 200 });
  });
  const home = await plant();
  try {
    for (const [path, [sent, shown]] of Object.entries(texts)) {
      await t.step(path, async () => {
        const terminal = await runOn(home, ["fetch", `${server.origin}${path}`], { stdoutIsTerminal: true });
        assertEquals(terminal.stdout, shown);
        const pipe = await runOn(home, ["fetch", `${server.origin}${path}`]);
        assertEquals(pipe.stdoutBytes, encoder.encode(sent), "a pipe gets no added line end");
      });
    }
    // The 404's error line starts on its own line, after the body's.
    const failed = await runOn(home, ["fetch", `${server.origin}/no-newline`], {
      stdoutIsTerminal: true,
      onStderr: () => {},
    });
    assertEquals(failed.code, EXIT.failure);
    assertEquals(failed.stdout, '{"id":7}\n');
    assertMatch(failed.stderr, /^error: The server at 127\.0\.0\.1:\d+ answered GET \/no-newline with HTTP 404\n$/);
  } finally {
    await server.close();
    await Deno.remove(home, { recursive: true });
  }
});

/** Bytes of gzip that inflate to `size` zero bytes. */
async function gzipOfZeros(size: number): Promise<Uint8Array<ArrayBuffer>> {
  const zeros = new ReadableStream<BufferSource>({
    start(controller) {
      const chunk = new Uint8Array(1024 * 1024);
      for (let sent = 0; sent < size; sent += chunk.length) controller.enqueue(chunk);
      controller.close();
    },
  });
  return new Uint8Array(await new Response(zeros.pipeThrough(new CompressionStream("gzip"))).arrayBuffer());
}

Deno.test("fetch stops an answer at 32 MiB, counted after decompression: a gzip bomb, an endless body", async (t) => {
  const bomb = await gzipOfZeros(48 * 1024 * 1024);
  assert(bomb.length < 100_000, `the bomb is small on the wire (${bomb.length} bytes)`);
  let served = 0;
  const server = api((request) => {
    if (new URL(request.url).pathname === "/bomb") {
      return new Response(bomb, { headers: { "content-encoding": "gzip", "content-type": "application/json" } });
    }
    const chunk = new Uint8Array(1024 * 1024).fill(0x61);
    return new Response(
      new ReadableStream<Uint8Array>({
        pull(controller) {
          if (served >= 128 * 1024 * 1024) return controller.close(); // a broken client cannot spin for ever
          served += chunk.length;
          controller.enqueue(chunk);
        },
      }),
    );
  });
  const home = await plant();
  try {
    for (const path of ["/bomb", "/endless"]) {
      await t.step(path, async () => {
        served = 0;
        const result = await runOn(home, ["fetch", `${server.origin}${path}`], { boundMs: 20_000 });
        assertEquals(result.code, EXIT.failure);
        assertEquals(result.stdoutBytes.length, 0, "nothing of it was written");
        assertEquals(
          result.stderr,
          `error: The server at ${new URL(server.origin).host} sent a response larger than 32 MiB\n` +
            `hint: fetch reads at most 32 MiB; for more, give the token to curl: "oauth-login token --format headers --issuer ${ISSUER} --client-id ${CLIENT} --url URL | curl -H @- URL"\n`,
        );
        if (path === "/endless") assert(served < 64 * 1024 * 1024, `the tool stopped reading (${served} bytes sent)`);
      });
    }
  } finally {
    await server.close();
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("fetch never follows a redirect: the target gets nothing (no token), and the 3xx is reported", async (t) => {
  const target = api();
  const server = api((request) => {
    const path = new URL(request.url).pathname;
    const status = Number(path.slice(1, 4));
    const location = path.endsWith("/same") ? "/steal" : `${target.origin}/steal`;
    return new Response("moved\n", { status, headers: { location } });
  });
  const home = await plant();
  try {
    for (const path of ["/301", "/302", "/303", "/307", "/308", "/307/same"]) {
      await t.step(path, async () => {
        const result = await runOn(home, ["fetch", "-X", "POST", "-d", "a=1", `${server.origin}${path}`]);
        assertEquals(target.seen, [], "the other server got nothing");
        assertEquals(server.seen.filter((s) => s.path === "/steal"), [], "nor the same server's other address");
        assertEquals(server.seen.at(-1)!.path, path);
        assertEquals(result.code, EXIT.failure);
        assertEquals(result.stdout, "moved\n", "the 3xx's own body");
        const to = path.endsWith("/same") ? `${server.origin}/steal` : `${target.origin}/steal`;
        assertEquals(
          result.stderr,
          `error: The server at ${new URL(server.origin).host} answered POST ${path} with HTTP ${
            path.slice(1, 4)
          }, a redirect to "${to}" that is not followed\n` +
            "hint: fetch never follows a redirect, so the token goes nowhere else; fetch the new address if you trust it\n",
        );
      });
    }
  } finally {
    await server.close();
    await target.close();
    await Deno.remove(home, { recursive: true });
  }
});

// ── 3: where a token may go ─────────────────────────────────────────────────────────────────────

Deno.test("a URL with credentials (user:password@) is refused by fetch and token --format headers (red team, finding 12)", async (t) => {
  const server = api();
  const home = await plant();
  try {
    const origin = server.origin.replace("http://", "http://alice:Secr3t@");
    for (
      const [args, says] of [
        [["fetch", `${origin}/me`], "fetch sends"],
        [["token", "--format", "headers", "--url", `${origin}/me`], "the headers carry"],
        [["fetch", server.origin.replace("http://", "https://alice@") + "/me"], "fetch sends"],
      ] as const
    ) {
      await t.step(args.join(" ").replace("Secr3t", "…"), async () => {
        const result = await runOn(home, [...args]);
        const shown = new URL(args.at(-1)!);
        assertEquals(result.code, EXIT.usage, result.stderr);
        assertEquals(
          result.stderr,
          `error: The URL "${shown.origin}${shown.pathname}" must not carry credentials\n` +
            `hint: ${says} the cached access token: take USER:PASSWORD@ out of the URL\n`,
        );
        assertEquals(result.stdout, "");
        assertEquals(server.seen, [], "nothing was sent: no Basic credentials instead of the token, no refresh");
      });
    }
  } finally {
    await server.close();
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("no example or hint puts a token on a command line: --help, the README, login.ts (red team, finding 10)", async () => {
  // `curl -H "Authorization: Bearer $(oauth-login token)"` puts the token in curl's argv, which every local user can
  // read in /proc/PID/cmdline while the request runs; `oauth-login fetch URL` and `token --format headers --url URL |
  // curl -H @- URL` do not.
  const substitution = /\$\([^)]*\btoken\b[^)]*\)|`[^`]*oauth-login[^`]*\btoken\b[^`]*`\s*"?\s*(https?:|\\)/;
  const texts: [string, string][] = [
    ["README.md", await Deno.readTextFile(new URL("../README.md", import.meta.url))],
    ["login.ts", await Deno.readTextFile(new URL("../login.ts", import.meta.url))],
  ];
  for (const command of ["", "login", "token", "whoami", "logout", "doctor", "profiles", "fetch"]) {
    const help = await run(command ? [command, "--help"] : ["--help"]);
    texts.push([`${command} --help`.trim(), help.stdout]);
    await cleanUp(help);
  }
  for (const [where, text] of texts) {
    assert(!substitution.test(text), `${where} puts the token on a command line: ${text.match(substitution)?.[0]}`);
  }
  const main = texts.find(([where]) => where === "--help")![1];
  assertStringIncludes(main, "  oauth-login fetch https://api.example.com/me\n");
  assertStringIncludes(main, "curl -H @- https://api.example.com/me\n");
});

Deno.test("a token never goes over plain http to a host that is not this machine, however the URL is given", async (t) => {
  const home = await plant();
  try {
    const remote = [
      "http://api.example.com/me",
      "http://127.0.0.1.nip.io/me",
      "http://localhost.example.com/me",
      "http://app.localhost/me", // routed as loopback, but a resolver need not know it
      "http://[::ffff:127.0.0.1]/me",
      "http://10.0.0.1/me",
      "ftp://api.example.com/me",
    ];
    for (const url of remote) {
      for (const args of [["fetch", url], ["fetch", "--url", url], ["token", "--format", "headers", "--url", url]]) {
        await t.step(args.join(" "), async () => {
          const result = await runOn(home, args);
          assertEquals(result.code, EXIT.usage, result.stderr);
          assertEquals(result.stdout, "");
          assertEquals(
            result.stderr,
            `error: The URL "${new URL(url).href}" is not an https URL\n` +
              "hint: access tokens are only sent over https (plain http only to this machine: 127.0.0.1, [::1] or localhost)\n",
          );
        });
      }
    }
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("plain http to this machine is allowed: all of 127.0.0.0/8, as for the issuer's loopback", async () => {
  if (Deno.build.os !== "linux") return; // only Linux routes all of 127.0.0.0/8 to the loopback interface
  const server = Deno.serve({ hostname: "127.0.0.2", port: 0, onListen() {} }, (request) => {
    return new Response(request.headers.get("authorization") === `Bearer ${TOKEN}` ? "ok\n" : "no token\n");
  });
  const home = await plant();
  try {
    const result = await runOn(home, ["fetch", `http://127.0.0.2:${server.addr.port}/me`]);
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(result.stdout, "ok\n");
    const headers = await runOn(home, [
      "token",
      "--format",
      "headers",
      "--url",
      `http://127.0.0.2:${server.addr.port}/`,
    ]);
    assertEquals(headers.stdout, `Authorization: Bearer ${TOKEN}\n`);
  } finally {
    await server.shutdown();
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("a token for a resource goes only to that resource's origin, for fetch and token --format headers", async (t) => {
  const server = api();
  const other = "https://api-one.example/";
  const mine = `${server.origin}/`;
  try {
    await t.step("the login named another API: refused before anything is sent", async () => {
      const home = await plant({ resources: [other] });
      try {
        for (
          const args of [["fetch", `${server.origin}/me`], [
            "token",
            "--format",
            "headers",
            "--url",
            `${server.origin}/me`,
          ]]
        ) {
          const result = await runOn(home, [args[0], "--resource", other, ...args.slice(1)]);
          assertEquals(result.code, EXIT.usage, result.stderr);
          assertEquals(result.stdout, "");
          assertEquals(
            result.stderr,
            `error: The access token is for "https://api-one.example", not for "${server.origin}"\n` +
              `hint: to call ${server.origin}, log in for it: add --resource ${server.origin} to the login and to this command\n`,
          );
        }
        assertEquals(server.seen, []);
      } finally {
        await Deno.remove(home, { recursive: true });
      }
    });
    await t.step("the entry's token is for the first of two resources: the other's origin is refused", async () => {
      // Named in the other order, the resources find the same entry, whose token is for `other`.
      const home = await plant({
        resources: [other, mine],
        resourceTokens: { [mine]: { accessToken: "token-for-mine", tokenType: "Bearer", expiresAt: Date.now() + 3e6 } },
      });
      try {
        for (
          const args of [["fetch", `${server.origin}/me`], [
            "token",
            "--format",
            "headers",
            "--url",
            `${server.origin}/me`,
          ]]
        ) {
          const result = await runOn(home, [args[0], "--resource", mine, "--resource", other, ...args.slice(1)]);
          assertEquals(result.code, EXIT.usage, result.stderr);
          assertEquals(result.stdout, "");
          assertEquals(
            result.stderr,
            `error: The access token is for "https://api-one.example", not for "${server.origin}"\n` +
              `hint: pass only --resource ${mine}, and the login's token for that API is used\n`,
          );
        }
        assertEquals(server.seen, [], "the API got nothing");
        // The hint works: that resource's own token goes to its own origin.
        const result = await runOn(home, ["fetch", "--resource", mine, `${server.origin}/me`]);
        assertEquals(result.code, EXIT.ok, result.stderr);
        assertEquals(server.seen.map((s) => s.authorization), ["Bearer token-for-mine"]);
        const headers = await runOn(home, ["token", "--format", "headers", "--resource", mine, "--url", `${mine}x`]);
        assertEquals(headers.stdout, "Authorization: Bearer token-for-mine\n");
      } finally {
        await Deno.remove(home, { recursive: true });
      }
    });
    await t.step("a resource that is no http(s) URI names no origin: any https origin or this machine", async () => {
      const home = await plant({ resources: ["urn:example:api"] });
      try {
        const result = await runOn(home, ["fetch", "--resource", "urn:example:api", `${server.origin}/me`]);
        assertEquals(result.code, EXIT.ok, result.stderr);
      } finally {
        await Deno.remove(home, { recursive: true });
      }
    });
  } finally {
    await server.close();
  }
});

// ── 4: RFC 6750 b64token ────────────────────────────────────────────────────────────────────────

/** Access tokens no Authorization header may carry: each one a way to add to the header, or add one. */
const NOT_B64TOKEN: Record<string, string> = {
  "a line break": "abc\r\nX-Injected: yes",
  "a bare LF": "abc\nDPoP: forged",
  "a space": "abc def",
  "a comma and a quote": 'abc,"def"',
  "an = in the middle": "abc=def",
  "a non-ASCII letter": "abcé",
  "a tab": "abc\tdef",
};

Deno.test("an access token that is not b64token syntax in a token answer is refused: not saved, printed or sent", async (t) => {
  for (const [what, token] of Object.entries(NOT_B64TOKEN)) {
    await t.step(what, async () => {
      const mock = serveMockIssuer({ shapeToken: (body) => ({ ...body, access_token: token }) });
      try {
        const result = await run([
          "login",
          "--issuer",
          mock.issuer,
          "--client-id",
          CLIENT,
          "--scope",
          "openid offline_access",
          "--flow",
          "browser",
          "--json",
        ], { browser: (start) => scriptedBrowser(start) });
        assertEquals(result.code, EXIT.failure);
        assertEquals(result.stdout, "", "nothing printed");
        assertStringIncludes(
          result.stderr,
          "error: The server sent an access token that cannot be used in an HTTP header\n" +
            "hint: it has characters RFC 6750 does not allow in a token (a space, a line break, ...): report it to the server's operator\n",
        );
        assert(!result.stderr.includes(token), "the token is not shown");
        assertEquals(mock.calls("userinfo").length + mock.calls("introspect").length, 0, "nor sent anywhere");
        assertEquals([...Deno.readDirSync(`${result.home}/cache`)].filter((e) => e.name.endsWith(".json")), []);
        await cleanUp(result);
      } finally {
        await mock.close();
      }
    });
  }
});

Deno.test("a refresh that brings an access token that is not b64token syntax: refused, the entry not overwritten", async () => {
  const mock = serveMockIssuer();
  try {
    const login = await run(
      [
        "login",
        "--issuer",
        mock.issuer,
        "--client-id",
        CLIENT,
        "--scope",
        "openid offline_access",
        "--flow",
        "browser",
      ],
      { browser: (start) => scriptedBrowser(start) },
    );
    assertEquals(login.code, EXIT.ok, login.stderr);
    const files = [...Deno.readDirSync(`${login.home}/cache`)].filter((e) => e.name.endsWith(".json"));
    const before = await Deno.readTextFile(`${login.home}/cache/${files[0].name}`);
    mock.shapeToken = (body) => ({ ...body, access_token: "fresh\r\nX-Injected: yes" });
    const result = await run(
      ["token", "--issuer", mock.issuer, "--client-id", CLIENT, "--scope", "openid offline_access"],
      { home: login.home, now: () => Date.now() + 86_400_000 }, // a day later: the token has expired
    );
    assertEquals(mock.calls("token").filter((c) => c.form.grant_type === "refresh_token").length, 1);
    assertEquals(result.code, EXIT.failure);
    assertEquals(result.stdout, "");
    assertStringIncludes(
      result.stderr,
      "error: The server sent an access token that cannot be used in an HTTP header\n",
    );
    assertEquals(await Deno.readTextFile(`${login.home}/cache/${files[0].name}`), before, "the entry is as it was");
    await cleanUp(login);
  } finally {
    await mock.close();
  }
});

Deno.test("a cached access token that is not b64token syntax is neither printed nor sent: token, --format headers, fetch", async (t) => {
  const server = api();
  try {
    for (const [what, token] of Object.entries(NOT_B64TOKEN)) {
      const home = await plant({ accessToken: token });
      try {
        for (
          const args of [
            ["token"],
            ["token", "--format", "json"],
            ["token", "--format", "exec-credential"],
            ["token", "--format", "headers", "--url", `${server.origin}/me`],
            ["fetch", `${server.origin}/me`],
          ]
        ) {
          await t.step(`${what}: ${args.join(" ")}`, async () => {
            const result = await runOn(home, args);
            assertEquals(result.code, EXIT.loginRequired, result.stderr);
            assertEquals(result.stdout, "");
            assertEquals(
              result.stderr,
              `error: The cached access token for ${ISSUER} cannot be used in an HTTP header\n` +
                `hint: sign in again to replace it: run "oauth-login login --issuer ${ISSUER} --client-id ${CLIENT}"\n`,
            );
          });
        }
      } finally {
        await Deno.remove(home, { recursive: true });
      }
    }
    assertEquals(server.seen, [], "the API got nothing");
  } finally {
    await server.close();
  }
});

// ── 5: client assertions are addressed to the server that receives them ─────────────────────────

/** Decodes a JWT's payload without verifying it. */
function claims(jwt: string): Record<string, unknown> {
  const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(decoder.decode(Uint8Array.from(atob(part), (c) => c.charCodeAt(0))));
}

/**
 * A fetch in front of the mock that serves its PAR endpoint at `parOrigin` too (another host: the
 * mock's own port on `localhost`), and records the `aud` of every client assertion by where it went.
 */
function recordingAssertions(mock: ServedMock, parOrigin: string) {
  const auds: [string, unknown][] = [];
  const fetchVia: typeof fetch = (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const form = init?.body instanceof URLSearchParams ? init.body : undefined;
    const assertion = form?.get("client_assertion");
    if (assertion) auds.push([`${url.origin}${url.pathname}`, claims(assertion).aud]);
    if (url.origin === parOrigin) return fetch(`${mock.issuer}${url.pathname}`, init);
    return fetch(url, init);
  };
  return { auds, fetchVia };
}

Deno.test("--assertion-audience token-endpoint: the assertion sent to a PAR endpoint on another host names that endpoint", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "oauth-login-sender-key-" });
  try {
    const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
    const key = `${dir}/client.jwk`;
    await Deno.writeTextFile(key, JSON.stringify(await crypto.subtle.exportKey("jwk", pair.privateKey)), {
      mode: 0o600,
    });
    const cases: [string, boolean, string[]][] = [
      ["token-endpoint, PAR on another host", true, ["--assertion-audience", "token-endpoint"]],
      ["token-endpoint, PAR beside the token endpoint", false, ["--assertion-audience", "token-endpoint"]],
      ["issuer (the default), PAR on another host", true, []],
    ];
    for (const [name, elsewhere, extra] of cases) {
      await t.step(name, async () => {
        const mock = serveMockIssuer({ par: true });
        try {
          const parOrigin = elsewhere ? `http://localhost:${mock.port}` : new URL(mock.issuer).origin;
          mock.metadata.pushed_authorization_request_endpoint = `${parOrigin}/par`;
          const { auds, fetchVia } = recordingAssertions(mock, elsewhere ? parOrigin : "none");
          const result = await run(
            [
              "login",
              "--issuer",
              mock.issuer,
              "--client-id",
              CLIENT,
              "--client-key",
              key,
              "--flow",
              "browser",
              ...extra,
            ],
            { browser: (start) => scriptedBrowser(start), fetch: fetchVia },
          );
          assertEquals(result.code, EXIT.ok, result.stderr);
          assertEquals(mock.calls("par").length, 1, "the request was pushed");
          const tokenEndpoint = `${mock.issuer}/token`;
          const forPar = extra.length === 0 ? mock.issuer : elsewhere ? `${parOrigin}/par` : tokenEndpoint;
          const forTokenOrigin = extra.length === 0 ? mock.issuer : tokenEndpoint;
          assertEquals(auds, [
            [`${parOrigin}/par`, forPar],
            [tokenEndpoint, forTokenOrigin],
            [`${mock.issuer}/introspect`, forTokenOrigin], // beside the token endpoint: as at the token endpoint
          ]);
          assertNoLeaks(result, []);
          await cleanUp(result);
        } finally {
          await mock.close();
        }
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ── 6: the rest of the one sender, for fetch: trace, timeout, network errors, Ctrl-C ───────────

Deno.test("fetch --verbose traces the request with the token redacted, and the answer by its size", async () => {
  const server = api();
  const home = await plant();
  try {
    const result = await runOn(home, ["fetch", "--verbose", `${server.origin}/me?q=1`]);
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertStringIncludes(result.stderr, `trace: > GET ${server.origin}/me?q=1 authorization=Bear…[redacted]\n`);
    assertStringIncludes(result.stderr, `trace: < 200 ${server.origin}/me (11 bytes)\n`);
    assertNoLeaks(result, [TOKEN]);
  } finally {
    await server.close();
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("fetch explains a failure the way issuer requests do: a timeout, a refused connection, Ctrl-C", async (t) => {
  const home = await plant();
  const hung = signal();
  const release = signal();
  const server = api(async () => {
    hung.resolve();
    await release.promise;
    return new Response("late\n");
  });
  try {
    await t.step("no answer within the limit", async () => {
      const result = await runOn(home, ["fetch", `${server.origin}/slow`], { httpTimeoutMs: 50 });
      assertEquals(result.code, EXIT.failure);
      assertEquals(
        result.stderr,
        `error: The server at ${new URL(server.origin).host} did not answer within 0.05 seconds\n` +
          `hint: GET ${server.origin}/slow timed out: check your network connection and the URL\n`,
      );
    });
    await t.step("Ctrl-C while the API has not answered", async () => {
      const controller = new AbortController();
      const running = runOn(home, ["fetch", `${server.origin}/slow`], { controller });
      await hung.promise;
      controller.abort();
      const result = await running;
      assertEquals(result.code, EXIT.interrupted, result.stderr);
      assertEquals(result.stderr, "error: Interrupted\n");
    });
    release.resolve();
    await t.step("nothing listens on the port", async () => {
      const closed = api();
      await closed.close();
      const result = await runOn(home, ["fetch", `${closed.origin}/me`]);
      const host = new URL(closed.origin).host;
      assertEquals(result.code, EXIT.failure);
      assertEquals(
        result.stderr,
        `error: Cannot reach ${host}: the connection was refused (nothing listens on that port) (GET ${closed.origin}/me)\n` +
          `hint: check your network connection, and that the server runs at ${host} (the URL's port)\n`,
      );
    });
  } finally {
    release.resolve();
    await server.close();
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("logout never quotes a cached token the runtime refuses as a header value (a provider's bearer revocation)", async () => {
  const server = api();
  const token = "secret-token-0123456789\r\nX-Injected: yes";
  // The preset's addresses, moved to the stand-in (`Deps.presetBase`).
  const home = await plant({ issuer: server.origin, scope: "openid email profile", accessToken: token });
  try {
    const result = await run(["logout", "--provider", "dropbox", "--client-id", CLIENT, "--verbose"], {
      home,
      presetBase: server.origin,
    });
    assertEquals(server.seen, [], "nothing was sent");
    assertStringIncludes(
      result.stderr,
      `warning: Cannot send POST ${server.origin}/2/auth/token/revoke: a header value has characters HTTP does not allow\n`,
    );
    assertNoLeaks(result, ["secret-token-0123456789"]);
    assertEquals([...Deno.readDirSync(`${home}/cache`)].filter((e) => e.name.endsWith(".json")), [], "removed here");
  } finally {
    await server.close();
    await Deno.remove(home, { recursive: true });
  }
});
