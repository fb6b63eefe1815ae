/**
 * The keychain (issue 21) against fake platform tools: `secret-tool` and `busctl` over an in-memory
 * Secret Service, macOS's `security` (its `-i` line splitter ported), and Windows PowerShell (the
 * `-EncodedCommand` script decoded and played against an in-memory Credential Manager), each answering
 * as the tool's documentation and tests/keychain/README.md's measurements say. What goes where (no
 * long-lived secret in a file), the cached `token` path that never calls a tool, a refresh that reads
 * the keychain once, migration both ways, `auto`'s one warning and `keychain`'s error, the deadline
 * and the problem remembered, logout and the orphaned items, and the command lines (never a secret in
 * an argument). The real GNOME Keyring is tests/keyring_test.ts.
 *
 * @module
 */
import { type Deps, EXIT, testing, type TokenSet } from "../login.ts";
const { itemAccount, itemFile, openSealed, sealSecrets, sealedSecret } = testing;
import { CONFIDENTIAL_CLIENT, PUBLIC_CLIENT, type ServedMock, serveMockIssuer, TOKEN_EXCHANGE } from "./mock_issuer.ts";
import { serveResourceServer } from "./_resource_server.ts";
import { cleanLoginStderr, filesUnder, type Run, run, type RunOptions, scriptedBrowser, withMock } from "./_harness.ts";
import { assert, assertEquals, assertMatch, assertNotMatch, assertStringIncludes } from "./assert.ts";

// ── Fake tools ──────────────────────────────────────────────────────────────────────────────────

type RunTool = NonNullable<Deps["runTool"]>;
type Answer = Awaited<ReturnType<RunTool>>;

/** One call of a keychain tool as the tool made it. */
interface ToolRecord {
  command: string;
  args: string[];
  stdin?: string;
  /** Killed (its signal aborted) before it answered. */
  killed: boolean;
}

/** A fake keychain: its items by account, the calls made, and switches for its state. */
interface FakeKeychain {
  items: Map<string, { label: string; secret: string }>;
  calls: ToolRecord[];
  state: { locked: boolean; hang: boolean; noBusctl?: boolean };
  runTool: RunTool;
}

/** A keychain whose tools answer with `answer`; with `state.hang`, no call ever answers until it is killed. */
function fakeKeychain(answer: (fake: FakeKeychain, call: ToolRecord) => Answer): FakeKeychain {
  const fake: FakeKeychain = {
    items: new Map(),
    calls: [],
    state: { locked: false, hang: false },
    runTool: (command, args, { stdin, signal }) => {
      const call: ToolRecord = { command, args, stdin, killed: false };
      fake.calls.push(call);
      if (!fake.state.hang) return Promise.resolve(answer(fake, call));
      return new Promise((resolve) => {
        const end = () => {
          call.killed = true;
          resolve({ code: null, stdout: "", stderr: "" });
        };
        if (signal.aborted) end();
        else signal.addEventListener("abort", end, { once: true });
      });
    },
  };
  return fake;
}

const ok = (stdout = "", stderr = ""): Answer => ({ code: 0, stdout, stderr });
const exit = (code: number, stderr = "", stdout = ""): Answer => ({ code, stdout, stderr });

/**
 * `busctl` and `secret-tool` (libsecret 0.20.5) as measured: `Locked` read without a prompt; store
 * replaces, and fails in a locked collection; lookup exits 1 and says nothing both for "no such item"
 * and for a locked one; clear exits 1 when nothing matched; search prints attributes on stderr and the
 * secrets of unlocked items on stdout.
 */
function fakeSecretService(): FakeKeychain {
  return fakeKeychain((fake, { command, args, stdin }) => {
    if (command === "busctl" && !fake.state.noBusctl) return ok(`b ${fake.state.locked}\n`);
    if (command === "dbus-send") {
      assertEquals(args.slice(-2), ["string:org.freedesktop.Secret.Collection", "string:Locked"]);
      return ok(`   variant       boolean ${fake.state.locked}\n`);
    }
    if (command !== "secret-tool") return { code: null, stdout: "", stderr: "", failure: "missing" };
    assertEquals(args[args.indexOf("service") + 1], "oauth-login", "only the tool's own service");
    const account = args[args.indexOf("account") + 1];
    const item = fake.items.get(account);
    switch (args[0]) {
      case "store":
        if (fake.state.locked) return exit(1, "secret-tool: Cannot create an item in a locked collection\n");
        assert(args[1].startsWith("--label="));
        fake.items.set(account, { label: args[1].slice("--label=".length), secret: stdin ?? "" });
        return ok();
      case "lookup":
        return fake.state.locked || !item ? exit(1) : ok(item.secret);
      case "clear":
        if (fake.state.locked || !item) return exit(1);
        fake.items.delete(account);
        return ok();
      case "search": {
        const found = [...fake.items.entries()];
        return ok(
          found.map(([, i], n) => `[/${n}]\nlabel = ${i.label}\nsecret = ${i.secret}\n`).join(""),
          found.map(([a]) => `attribute.account = ${a}\nattribute.service = oauth-login\n`).join(""),
        );
      }
    }
    throw new Error(`secret-tool ${args[0]} is not a command the tool should run`);
  });
}

/** Apple's split_line (SecurityTool security.c): whitespace-separated, quotes, a backslash escapes the next character. */
function splitLine(line: string): string[] {
  const out: string[] = [];
  let current: string | undefined;
  let quote = "";
  let escaped = false;
  for (const c of line) {
    if (escaped) {
      current = (current ?? "") + c;
      escaped = false;
    } else if (c === "\\") escaped = true;
    else if (quote) {
      if (c === quote) {
        out.push(current ?? "");
        current = undefined;
        quote = "";
      } else current = (current ?? "") + c;
    } else if (/\s/.test(c)) {
      if (current !== undefined) out.push(current);
      current = undefined;
    } else if ((c === '"' || c === "'") && current === undefined) quote = c;
    else current = (current ?? "") + c;
  }
  if (current !== undefined) out.push(current);
  return out;
}

/** The value after a `security` option in an argument list. */
function option(args: string[], name: string): string {
  return args[args.indexOf(name) + 1];
}

/**
 * macOS's `/usr/bin/security`: `-i` reads one command a line from stdin (at most 4095 bytes a line);
 * `add-generic-password -U` replaces; `find-generic-password -w` prints the password and a newline;
 * exit 44 when no item matches; a locked keychain without a person to ask says "User interaction is
 * not allowed" (exit 36); `dump-keychain` lists every item's attributes.
 */
function fakeSecurity(): FakeKeychain {
  const notAllowed = exit(36, "security: SecKeychainItemCopyContent: User interaction is not allowed.\n");
  const notFound = exit(
    44,
    "security: SecKeychainSearchCopyNext: The specified item could not be found in the keychain.\n",
  );
  const command = (fake: FakeKeychain, args: string[]): Answer => {
    if (fake.state.locked) return notAllowed;
    if (args[0] === "dump-keychain") {
      const blocks = [...fake.items.entries()].map(([account, item]) =>
        `keychain: "/Users/alice/Library/Keychains/login.keychain-db"\nversion: 512\nclass: "genp"\nattributes:\n` +
        `    0x00000007 <blob>="${item.label}"\n    "acct"<blob>=${
          /^[\x20-\x7e]*$/.test(account) ? `"${account}"` : `0x${new TextEncoder().encode(account).toHex()}  "…"`
        }\n    "svce"<blob>="oauth-login"\n`
      );
      return ok(
        blocks.join("") + `keychain: "/Library/Keychains/System.keychain"\nclass: "genp"\n    "svce"<blob>="x"\n`,
      );
    }
    assertEquals(option(args, "-s"), "oauth-login", "only the tool's own service");
    const account = option(args, "-a");
    switch (args[0]) {
      case "add-generic-password":
        assert(args.includes("-U"), "-U: replace the item");
        fake.items.set(account, { label: option(args, "-l"), secret: option(args, "-w") });
        return ok();
      case "find-generic-password": {
        const item = fake.items.get(account);
        assertEquals(args.at(-1), "-w", "-w last, with no value: print the password");
        return item ? ok(`${item.secret}\n`) : notFound;
      }
      case "delete-generic-password":
        return fake.items.delete(account) ? ok() : notFound;
    }
    throw new Error(`security ${args[0]} is not a command the tool should run`);
  };
  return fakeKeychain((fake, call) => {
    assertEquals(call.command, "/usr/bin/security", "security by its absolute path");
    if (call.args[0] !== "-i") return command(fake, call.args);
    assertEquals(call.args, ["-i"]);
    const lines = (call.stdin ?? "").split("\n");
    assertEquals(lines.at(-1), "", "every line ends with a newline (security drops one that does not)");
    let last = ok();
    for (const line of lines.slice(0, -1)) {
      assert(new TextEncoder().encode(line).length + 1 <= 4095, "a line within security's 4096-byte buffer");
      last = command(fake, splitLine(line));
    }
    return last;
  });
}

/** The script inside `powershell.exe -EncodedCommand` (base64 of UTF-16LE). */
function decodedScript(args: string[]): string {
  assertEquals(args.slice(0, 6), [
    "-NoLogo",
    "-NoProfile",
    "-NonInteractive",
    "-ExecutionPolicy",
    "Bypass",
    "-EncodedCommand",
  ]);
  assertEquals(args.length, 7);
  return new TextDecoder("utf-16le").decode(Uint8Array.fromBase64(args[6]));
}

/** The PowerShell single-quoted literals of a call `[OauthLoginCredentials]::Op(...)`. */
function psArguments(script: string, op: string): string[] {
  const call = script.match(new RegExp(`\\[OauthLoginCredentials\\]::${op}\\(((?:'(?:[^']|'')*'|[^)])*)\\)`));
  assert(call, `the script calls ${op}`);
  return [...call[1].matchAll(/'((?:[^']|'')*)'/g)].map((m) => m[1].replaceAll("''", "'"));
}

/**
 * Windows PowerShell running the tool's scripts against an in-memory Credential Manager: generic
 * credentials by target name, at most 2,560 bytes each (CRED_MAX_CREDENTIAL_BLOB_SIZE); the script's
 * own exit codes (2: not found, 3: a Windows error on stderr), and 1312 where there is no logon session.
 */
function fakePowerShell(): FakeKeychain {
  return fakeKeychain((fake, { command, args, stdin }) => {
    assertEquals(command, "powershell.exe");
    const script = decodedScript(args);
    assertStringIncludes(script, "Add-Type -TypeDefinition @'\n");
    if (fake.state.locked) return exit(3, "Windows error 1312\n");
    if (script.includes("::Write(")) {
      const [target, user, comment] = psArguments(script, "Write");
      const blob = Uint8Array.fromBase64((stdin ?? "").trim());
      if (blob.length > 2560) return exit(3, "Windows error 1783\n");
      fake.items.set(target, { label: `${comment} (${user})`, secret: new TextDecoder().decode(blob) });
      return ok();
    }
    if (script.includes("::Read(")) {
      const item = fake.items.get(psArguments(script, "Read")[0]);
      return item ? ok(new TextEncoder().encode(item.secret).toBase64()) : exit(2);
    }
    if (script.includes("::Delete(")) return fake.items.delete(psArguments(script, "Delete")[0]) ? ok() : exit(2);
    if (script.includes("::List(")) {
      assertEquals(psArguments(script, "List"), ["oauth-login:*"]);
      const targets = [...fake.items.keys()].filter((t) => t.startsWith("oauth-login:"));
      return targets.length
        ? ok(targets.map((t) => new TextEncoder().encode(t).toBase64() + "\r\n").join(""))
        : exit(2);
    }
    throw new Error(`an unexpected script:\n${script}`);
  });
}

// ── Helpers ─────────────────────────────────────────────────────────────────────────────────────

/** A session bus to talk to, and --token-storage auto (the harness's default is the file). */
const DESKTOP = { DBUS_SESSION_BUS_ADDRESS: "unix:path=/run/user/1000/bus", OAUTH_TOKEN_STORAGE: "auto" };

/** No session bus at all: a headless server, a container, SSH without a desktop. */
const HEADLESS = { OAUTH_TOKEN_STORAGE: "auto" };

function flags(mock: ServedMock): string[] {
  return ["--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id];
}

async function login(mock: ServedMock, options: RunOptions, extra: string[] = []): Promise<Run> {
  // A server that does DPoP says so (RFC 9449 §5.1); `--dpop` is refused at one that does not.
  if (extra.includes("--dpop")) mock.metadata.dpop_signing_alg_values_supported = ["ES256"];
  return await run(["login", ...flags(mock), ...extra], { browser: (url) => scriptedBrowser(url), ...options });
}

/** The one entry of a home's cache, as its file holds it. */
function entryOf(home: string): TokenSet {
  const names = [...Deno.readDirSync(`${home}/cache`)].map((e) => e.name).filter((n) => n.endsWith(".json"));
  assertEquals(names.length, 1, names.join(", "));
  return JSON.parse(Deno.readTextFileSync(`${home}/cache/${names[0]}`));
}

/** Every byte of every file under the home (the cache, the config), as text. */
async function everyFile(home: string): Promise<string> {
  const texts = await Promise.all((await filesUnder(home)).map((name) => Deno.readTextFile(`${home}/${name}`)));
  return texts.join("\n");
}

/** The refresh tokens the mock issued. */
function refreshTokensOf(mock: ServedMock): string[] {
  return [...mock.refreshTokens.keys()];
}

function refreshes(mock: ServedMock) {
  return mock.calls("token").filter((r) => r.form.grant_type === "refresh_token");
}

/** The mock's token endpoint as a DPoP server answers a request with a proof: token_type DPoP. */
async function dpopFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
  const request = new Request(input, init);
  const response = await fetch(request);
  if (new URL(request.url).pathname !== "/token" || !request.headers.has("dpop") || !response.ok) return response;
  return Response.json({ ...await response.json(), token_type: "DPoP" });
}

/** Two hours on: every cached access token has expired. */
const later = () => Date.now() + 2 * 3600_000;

/** Five hours on: a token refreshed two hours on has expired too. */
const evenLater = () => Date.now() + 5 * 3600_000;

/** No secret of `secrets` in any argument of any call (only ever on stdin). */
function assertNoSecretInArgs(calls: ToolRecord[], secrets: string[]): void {
  for (const call of calls) {
    const line = [call.command, ...call.args].join(" ");
    for (const secret of secrets) {
      assert(!line.includes(secret), `a secret in the arguments of ${call.command} ${call.args[0]}`);
    }
  }
}

/** The warning of `auto` when no keychain answers, for these secrets and this reason. */
function fallback(reason: string, what = "refresh token"): string {
  return `warning: Keeping the ${what} in the token cache file (readable only by you), not in the keychain: ${reason}\n`;
}

// ── What goes where ─────────────────────────────────────────────────────────────────────────────

Deno.test("a login with an unlocked Secret Service leaves no refresh token in any file: it is sealed under a key only the keychain item holds", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    const result = await login(mock, { env: DESKTOP, runTool: keychain.runTool });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(result.stderr, cleanLoginStderr(result.opened[0], new URL(mock.issuer).host), "no warning");
    const [refreshToken] = refreshTokensOf(mock);
    assert(refreshToken);
    const files = await everyFile(result.home);
    assertNotMatch(files, new RegExp(refreshToken), "no refresh token in any file");
    const entry = entryOf(result.home);
    assertEquals(entry.refreshToken, undefined);
    assertEquals(entry.sealed?.holds, ["refresh_token"]);
    assertEquals(entry.keptInFile, undefined);
    assert(entry.accessToken, "the short-lived access token stays in the file");
    // One item, named for a person (issuer, client, user, what, the file), holding a 256-bit key.
    const [[account, item]] = [...keychain.items];
    assertEquals(entry.sealed?.item, account);
    const name = (await filesUnder(`${result.home}/cache`))[0];
    assertEquals(account, `${mock.issuer}|cli-public|alice@example.com|tokens|${result.home}/cache/${name}`);
    assertEquals(
      item.label,
      `oauth-login: key to the cached tokens of alice@example.com at ${mock.issuer} (client cli-public)`,
    );
    assertMatch(item.secret, /^[A-Za-z0-9_-]{43}$/);
    assertNotMatch(files, new RegExp(item.secret), "the key is in no file");
    // The probe (no prompt), then one store with the key on stdin.
    assertEquals(keychain.calls.map((c) => `${c.command} ${c.args[0]}`), ["busctl --user", "secret-tool store"]);
    assertEquals(keychain.calls[1].stdin, item.secret);
    assertNoSecretInArgs(keychain.calls, [item.secret, refreshToken, entry.accessToken]);
    await Deno.remove(result.home, { recursive: true });
  });
});

Deno.test("the cached token path never runs a keychain tool; a refresh reads the keychain once and writes nothing to it", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    const first = await login(mock, { env: DESKTOP, runTool: keychain.runTool });
    const home = first.home;
    const before = entryOf(home);
    const [original] = refreshTokensOf(mock);
    keychain.calls.length = 0;

    const cached = await run(["token", ...flags(mock)], { home, env: DESKTOP, runTool: keychain.runTool });
    assertEquals(cached.code, EXIT.ok, cached.stderr);
    assertEquals(cached.stdout, `${before.accessToken}\n`);
    assertEquals(keychain.calls, [], "no keychain tool for a cached token");
    const whoami = await run(["whoami", ...flags(mock)], { home, env: DESKTOP, runTool: keychain.runTool });
    assertStringIncludes(whoami.stdout, "  refresh: yes\n  secrets: refresh token: in the keychain (sealed)\n");
    assertEquals(keychain.calls, [], "whoami reads no keychain either");

    mock.rotateRefreshTokens = true;
    const refreshed = await run(["token", ...flags(mock)], {
      home,
      env: DESKTOP,
      runTool: keychain.runTool,
      now: later,
    });
    assertEquals(refreshed.code, EXIT.ok, refreshed.stderr);
    assertEquals(refreshed.stderr, "");
    assertEquals(refreshes(mock).map((r) => r.form.refresh_token), [original], "the sealed refresh token was sent");
    assertEquals(keychain.calls.map((c) => `${c.command} ${c.args[0]}`), ["busctl --user", "secret-tool lookup"]);
    const after = entryOf(home);
    const rotated = refreshTokensOf(mock).find((t) => t !== original)!;
    assertNotMatch(await everyFile(home), new RegExp(`${original}|${rotated}`), "neither refresh token in a file");
    assertEquals(after.sealed?.item, before.sealed?.item, "the same item, the same key");
    assert(after.sealed?.data !== before.sealed?.data, "the rotated refresh token sealed anew");
    assertEquals(keychain.items.size, 1);
    // And the rotated token is the one the next refresh sends.
    const again = await run(["token", ...flags(mock)], {
      home,
      env: DESKTOP,
      runTool: keychain.runTool,
      now: evenLater,
    });
    assertEquals(again.code, EXIT.ok, again.stderr);
    assertEquals(refreshes(mock).at(-1)?.form.refresh_token, rotated);
    await Deno.remove(home, { recursive: true });
  });
});

Deno.test("a DPoP key is sealed too; token --format headers and fetch open it with one keychain read", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    const first = await login(mock, { env: DESKTOP, runTool: keychain.runTool, fetch: dpopFetch }, ["--dpop"]);
    assertEquals(first.code, EXIT.ok, first.stderr);
    const entry = entryOf(first.home);
    assertEquals(entry.dpopKey, undefined, "no private key in the file");
    assertEquals(entry.sealed?.holds, ["dpop_key", "refresh_token"]);
    assertNotMatch(await everyFile(first.home), /"d":/, "no private key member anywhere");
    keychain.calls.length = 0;
    const headers = await run(
      ["token", ...flags(mock), "--dpop", "--format", "headers", "--url", `${mock.issuer}/userinfo`],
      { home: first.home, env: DESKTOP, runTool: keychain.runTool, fetch: dpopFetch },
    );
    assertEquals(headers.code, EXIT.ok, headers.stderr);
    assertMatch(headers.stdout, /^Authorization: DPoP \S+\nDPoP: \S+\n$/);
    assertEquals(keychain.calls.map((c) => `${c.command} ${c.args[0]}`), ["busctl --user", "secret-tool lookup"]);
    await Deno.remove(first.home, { recursive: true });
  });
});

Deno.test("a login for two resources: token --resource for the other refreshes with the sealed refresh token, and seals the rotated one", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    const [one, two] = ["https://api-one.example/", "https://api-two.example/"];
    const first = await login(mock, { env: DESKTOP, runTool: keychain.runTool }, [
      "--resource",
      one,
      "--resource",
      two,
    ]);
    assertEquals(first.code, EXIT.ok, first.stderr);
    const [original] = refreshTokensOf(mock);
    keychain.calls.length = 0;
    const token = await run(["token", ...flags(mock), "--resource", two], {
      home: first.home,
      env: DESKTOP,
      runTool: keychain.runTool,
    });
    assertEquals(token.code, EXIT.ok, token.stderr);
    assertEquals(refreshes(mock).map((r) => [r.form.refresh_token, r.form.resource]), [[original, two]]);
    assertEquals(keychain.calls.map((c) => `${c.command} ${c.args[0]}`), ["busctl --user", "secret-tool lookup"]);
    const entry = entryOf(first.home);
    assertEquals(entry.sealed?.holds, ["refresh_token"]);
    assertEquals(Object.keys(entry.resourceTokens ?? {}), [two]);
    assertNotMatch(await everyFile(first.home), new RegExp(refreshTokensOf(mock).join("|")));
    await Deno.remove(first.home, { recursive: true });
  }, { rotateRefreshTokens: true });
});

Deno.test("fetch with a sealed DPoP key: one keychain read signs the proofs, the API's nonce is remembered, the entry stays sealed", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    const api = `${mock.issuer}/api/me`;
    const withApi = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
      const request = new Request(input, init);
      if (request.url !== api) return await dpopFetch(request);
      assertMatch(request.headers.get("authorization") ?? "", /^DPoP /);
      assert(request.headers.get("dpop"), "a proof");
      return Response.json({ ok: true }, { headers: { "dpop-nonce": "nonce-from-the-api" } });
    };
    const first = await login(mock, { env: DESKTOP, runTool: keychain.runTool, fetch: withApi }, ["--dpop"]);
    keychain.calls.length = 0;
    const fetched = await run(["fetch", ...flags(mock), "--dpop", api], {
      home: first.home,
      env: DESKTOP,
      runTool: keychain.runTool,
      fetch: withApi,
    });
    assertEquals(fetched.code, EXIT.ok, fetched.stderr);
    assertEquals(fetched.stdout, '{"ok":true}');
    assertEquals(keychain.calls.map((c) => `${c.command} ${c.args[0]}`), ["busctl --user", "secret-tool lookup"]);
    const entry = entryOf(first.home);
    assertEquals(entry.dpopNonces, { [new URL(api).origin]: "nonce-from-the-api" });
    assertEquals(entry.dpopKey, undefined);
    assertEquals(entry.sealed?.holds, ["dpop_key", "refresh_token"]);

    keychain.items.clear(); // the item removed by hand: the key cannot be had
    const gone = await run(["fetch", ...flags(mock), "--dpop", api], {
      home: first.home,
      env: DESKTOP,
      runTool: keychain.runTool,
      fetch: withApi,
    });
    assertEquals(gone.code, EXIT.loginRequired);
    assertEquals(
      gone.stderr,
      "error: Cannot prove the DPoP-bound token: its DPoP key and refresh token cannot be read any more (its key is no longer in the keychain)\n" +
        'hint: sign in again with "oauth-login login"\n',
    );
    await Deno.remove(first.home, { recursive: true });
  });
});

// ── auto: the file, said once; keychain: an error ───────────────────────────────────────────────

Deno.test("--token-storage auto with no session bus keeps the refresh token in the file, says so once for the entry, and runs no tool", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    const first = await login(mock, { env: HEADLESS, runTool: keychain.runTool });
    assertEquals(first.code, EXIT.ok, first.stderr);
    const host = new URL(mock.issuer).host;
    const clean = cleanLoginStderr(first.opened[0], host);
    const warning = fallback("there is no D-Bus session bus here");
    assertEquals(first.stderr, clean.replace("Logged in as", `${warning}Logged in as`));
    assertEquals(keychain.calls, [], "no bus: nothing to run");
    const entry = entryOf(first.home);
    assertEquals(entry.refreshToken, refreshTokensOf(mock)[0]);
    assertEquals(entry.keptInFile, "there is no D-Bus session bus here");
    // The second time for that entry: no warning (a login again, a refresh); whoami and doctor say it.
    const second = await login(mock, { home: first.home, env: HEADLESS, runTool: keychain.runTool });
    assertEquals(second.stderr, cleanLoginStderr(second.opened[0], host));
    const refreshed = await run(["token", ...flags(mock)], {
      home: first.home,
      env: HEADLESS,
      runTool: keychain.runTool,
      now: later,
    });
    assertEquals(refreshed.code, EXIT.ok, refreshed.stderr);
    assertEquals(refreshed.stderr, "");
    const whoami = await run(["whoami", ...flags(mock)], {
      home: first.home,
      env: HEADLESS,
      runTool: keychain.runTool,
    });
    assertStringIncludes(
      whoami.stdout,
      "  secrets: refresh token: in the token cache file (no keychain answered: there is no D-Bus session bus here)\n",
    );
    const doctor = await run(["doctor", ...flags(mock)], {
      home: first.home,
      env: HEADLESS,
      runTool: keychain.runTool,
    });
    assertStringIncludes(
      doctor.stdout,
      "ok    keychain   token storage: auto (from environment): refresh tokens and keys are sealed under a key in the keychain where one answers, else kept in the file\n",
    );
    assertStringIncludes(
      doctor.stdout,
      "warn  keychain   the Secret Service cannot be used here: there is no D-Bus session bus here (run it in your desktop session (where DBUS_SESSION_BUS_ADDRESS is set), or use --token-storage file)\n",
    );
    assertStringIncludes(
      doctor.stdout,
      `warn  keychain   1 cached login keeps its secrets in the token cache file (${mock.issuer} (client cli-public)): they move to the keychain at a refresh once it answers\n`,
    );
    await Deno.remove(first.home, { recursive: true });
  });
});

Deno.test("--token-storage keychain fails before the browser opens when no keychain can be used, and saves nothing", async (t) => {
  const cases: [string, Record<string, string>, (k: FakeKeychain) => void, string, string][] = [
    [
      "no session bus",
      { OAUTH_TOKEN_STORAGE: "keychain" },
      () => {},
      "there is no D-Bus session bus here",
      "run it in your desktop session (where DBUS_SESSION_BUS_ADDRESS is set), or use --token-storage auto or file",
    ],
    [
      "a locked keyring",
      { ...DESKTOP, OAUTH_TOKEN_STORAGE: "keychain" },
      (k) => k.state.locked = true,
      "the keyring is locked",
      'unlock it (log in to the desktop, or open "Passwords and Keys"), or use --token-storage auto or file',
    ],
  ];
  for (const [name, env, prepare, reason, hint] of cases) {
    await t.step(name, async () => {
      await withMock(async (mock) => {
        const keychain = fakeSecretService();
        prepare(keychain);
        const result = await login(mock, { env, runTool: keychain.runTool });
        assertEquals(result.code, EXIT.failure);
        assertEquals(
          result.stderr,
          `error: Cannot keep the tokens in the keychain (--token-storage keychain): ${reason}\nhint: ${hint}\n`,
        );
        assertEquals(result.opened, [], "the browser never opened");
        assertEquals(mock.calls("token"), []);
        assertEquals(await filesUnder(`${result.home}/cache`).catch(() => []), []);
        await Deno.remove(result.home, { recursive: true });
      });
    });
  }
});

Deno.test("a locked keyring: auto falls back to the file with the reason, and never asks for the locked items", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    keychain.state.locked = true;
    const result = await login(mock, { env: DESKTOP, runTool: keychain.runTool });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertStringIncludes(result.stderr, fallback("the keyring is locked"));
    assertEquals(keychain.calls.map((c) => `${c.command} ${c.args[0]}`), ["busctl --user"], "only the probe");
    assertEquals(entryOf(result.home).keptInFile, "the keyring is locked");
    await Deno.remove(result.home, { recursive: true });
  });
});

Deno.test("without busctl (no systemd), dbus-send reads the keyring's Locked property: unlocked, then locked", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    keychain.state.noBusctl = true;
    const open = await login(mock, { env: DESKTOP, runTool: keychain.runTool });
    assertEquals(open.code, EXIT.ok, open.stderr);
    assert(entryOf(open.home).sealed);
    assertEquals(keychain.calls.map((c) => `${c.command} ${c.args[0]}`), [
      "busctl --user",
      "dbus-send --session",
      "secret-tool store",
    ]);
    keychain.state.locked = true;
    const locked = await login(mock, { env: DESKTOP, runTool: keychain.runTool });
    assertStringIncludes(locked.stderr, fallback("the keyring is locked"));
    for (const home of [open.home, locked.home]) await Deno.remove(home, { recursive: true });
  });
});

Deno.test("a keychain that never answers: the call is killed at the 2 s deadline, the problem remembered, auto goes on with the file", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    keychain.state.hang = true;
    const waited: number[] = [];
    // The deadline's timer fires at once; every other wait (the browser's) only when it is stopped.
    const timer = (ms: number, signal: AbortSignal) => {
      if (ms === 2000) {
        waited.push(ms);
        return Promise.resolve();
      }
      return new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    };
    const result = await login(mock, { env: DESKTOP, runTool: keychain.runTool, timer });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertStringIncludes(result.stderr, fallback("the keychain did not answer within 2 seconds"));
    assertEquals(keychain.calls.length, 1, "one call; after its problem, none");
    assert(keychain.calls[0].killed, "the hung tool was killed");
    assertEquals(waited, [2000]);

    // keychain mode: the same in one sentence, before the browser opens.
    const strict = await login(mock, {
      env: { ...DESKTOP, OAUTH_TOKEN_STORAGE: "keychain" },
      runTool: keychain.runTool,
      timer,
    });
    assertEquals(strict.code, EXIT.failure);
    assertStringIncludes(
      strict.stderr,
      "error: Cannot keep the tokens in the keychain (--token-storage keychain): the keychain did not answer within 2 seconds\n",
    );
    assertEquals(strict.opened, []);
    for (const home of [result.home, strict.home]) await Deno.remove(home, { recursive: true });
  });
});

Deno.test("a keychain tool that hangs after the probe answered: one call killed at the deadline, none after it in that process", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    const first = await login(mock, {}); // in the file: the next refresh under auto moves it to the keychain
    const hanging: RunTool = (command, args, options) => {
      keychain.state.hang = command === "secret-tool"; // the bus answers; the keyring daemon does not
      return keychain.runTool(command, args, options);
    };
    const timer = (ms: number, signal: AbortSignal) =>
      ms === 2000
        ? Promise.resolve()
        : new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve()));
    const refreshed = await run(["token", ...flags(mock)], {
      home: first.home,
      env: DESKTOP,
      runTool: hanging,
      timer,
      now: later,
    });
    assertEquals(refreshed.code, EXIT.ok, refreshed.stderr);
    assertEquals(refreshed.stderr, fallback("the keychain did not answer within 2 seconds"));
    assertEquals(keychain.calls.map((c) => `${c.command} ${c.args[0]} ${c.killed}`), [
      "busctl --user false",
      "secret-tool store true",
    ], "the item was not tried again when the refreshed token was saved");
    assertEquals(entryOf(first.home).keptInFile, "the keychain did not answer within 2 seconds");
    await Deno.remove(first.home, { recursive: true });
  });
});

Deno.test("Ctrl-C while a keychain tool runs kills it and ends the command with 130", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    keychain.state.hang = true;
    const controller = new AbortController();
    const running = login(mock, {
      env: { ...DESKTOP, OAUTH_TOKEN_STORAGE: "keychain" },
      runTool: (command, args, options) => {
        queueMicrotask(() => controller.abort()); // the person presses Ctrl-C while it runs
        return keychain.runTool(command, args, options);
      },
      controller,
    });
    const result = await running;
    assertEquals(result.code, EXIT.interrupted);
    assert(keychain.calls[0].killed);
    await Deno.remove(result.home, { recursive: true });
  });
});

// ── Migration, both ways; a sealed entry that cannot be opened ──────────────────────────────────

Deno.test("an entry whose refresh token is in its file moves to the keychain at its next refresh, the item made before the request", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    const first = await login(mock, {}); // the file store, as an earlier version wrote it
    const home = first.home;
    const legacy = entryOf(home);
    delete legacy.keptInFile; // an earlier version's entry says nothing of why
    const [name] = await filesUnder(`${home}/cache`);
    Deno.writeTextFileSync(`${home}/cache/${name}`, JSON.stringify(legacy));
    let requestsWhenStored = -1;
    const runTool: RunTool = (command, args, options) => {
      if (args[0] === "store") requestsWhenStored = refreshes(mock).length;
      return keychain.runTool(command, args, options);
    };
    const refreshed = await run(["token", ...flags(mock)], { home, env: DESKTOP, runTool, now: later });
    assertEquals(refreshed.code, EXIT.ok, refreshed.stderr);
    assertEquals(refreshed.stderr, "");
    assertEquals(requestsWhenStored, 0, "the keychain item was made before the refresh request");
    const after = entryOf(home);
    assertEquals(after.refreshToken, undefined);
    assertEquals(after.sealed?.holds, ["refresh_token"]);
    assertNotMatch(await everyFile(home), new RegExp(refreshTokensOf(mock).join("|")));

    // And back: --token-storage file opens it (one read) at the next refresh and removes the item.
    const back = await run(["token", ...flags(mock), "--token-storage", "file"], {
      home,
      env: DESKTOP,
      runTool: keychain.runTool,
      now: evenLater,
    });
    assertEquals(back.code, EXIT.ok, back.stderr);
    const file = entryOf(home);
    assertEquals(file.sealed, undefined);
    assertEquals(file.keptInFile, "chosen");
    assert(file.refreshToken);
    assertEquals(keychain.items.size, 0, "the item it no longer uses is removed");
    await Deno.remove(home, { recursive: true });
  });
});

Deno.test("an old entry under auto with no keychain: its next refresh keeps it in the file and says so once", async () => {
  await withMock(async (mock) => {
    const first = await login(mock, {});
    const home = first.home;
    const legacy = entryOf(home);
    delete legacy.keptInFile;
    const [name] = await filesUnder(`${home}/cache`);
    Deno.writeTextFileSync(`${home}/cache/${name}`, JSON.stringify(legacy));
    const keychain = fakeSecretService();
    const refreshed = await run(["token", ...flags(mock)], {
      home,
      env: HEADLESS,
      runTool: keychain.runTool,
      now: later,
    });
    assertEquals(refreshed.code, EXIT.ok, refreshed.stderr);
    assertEquals(refreshed.stderr, fallback("there is no D-Bus session bus here"));
    const again = await run(["token", ...flags(mock)], {
      home,
      env: HEADLESS,
      runTool: keychain.runTool,
      now: evenLater,
    });
    assertEquals(again.stderr, "", "once for that entry");
    await Deno.remove(home, { recursive: true });
  });
});

Deno.test("migration under --token-storage keychain with a locked keyring fails before the refresh request, and keeps the entry", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    keychain.state.locked = true;
    const first = await login(mock, {});
    const before = Deno.readTextFileSync(`${first.home}/cache/${(await filesUnder(`${first.home}/cache`))[0]}`);
    const refreshed = await run(["token", ...flags(mock), "--token-storage", "keychain"], {
      home: first.home,
      env: DESKTOP,
      runTool: keychain.runTool,
      now: later,
    });
    assertEquals(refreshed.code, EXIT.failure);
    assertEquals(
      refreshed.stderr,
      "error: Cannot keep the refresh token in the keychain (--token-storage keychain): the keyring is locked\n" +
        'hint: unlock it (log in to the desktop, or open "Passwords and Keys"), or use --token-storage auto or file\n',
    );
    assertEquals(refreshes(mock), [], "no refresh request");
    assertEquals(Deno.readTextFileSync(`${first.home}/cache/${(await filesUnder(`${first.home}/cache`))[0]}`), before);
    await Deno.remove(first.home, { recursive: true });
  });
});

Deno.test("a sealed entry the keychain cannot open now: a live token is used with a warning, an expired one is an error that says why", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    const first = await login(mock, { env: DESKTOP, runTool: keychain.runTool });
    const home = first.home;
    const entry = entryOf(home);
    keychain.state.locked = true;
    // Due for renewal (within --min-ttl's minute) but not expired: the cached token, and why it was not renewed.
    const live = await run(["token", ...flags(mock)], {
      home,
      env: DESKTOP,
      runTool: keychain.runTool,
      now: () => Date.now() + 3600_000 - 30_000,
    });
    assertEquals(live.code, EXIT.ok, live.stderr);
    assertEquals(live.stdout, `${entry.accessToken}\n`);
    assertMatch(
      live.stderr,
      /^warning: Cannot renew the access token \(its refresh token is in the keychain, and the keyring is locked\); using the cached one, which expires in .+; it is tried again at the next use\n$/,
    );
    const expired = await run(["token", ...flags(mock)], { home, env: DESKTOP, runTool: keychain.runTool, now: later });
    assertEquals(expired.code, EXIT.failure);
    assertEquals(
      expired.stderr,
      "error: Cannot refresh the access token: its refresh token is in the keychain, and the keyring is locked\n" +
        'hint: unlock it (log in to the desktop, or open "Passwords and Keys"); or sign in again with "oauth-login login"\n',
    );
    assertEquals(refreshes(mock), []);
    assert(entryOf(home).sealed, "the entry is kept for when the keyring is unlocked");
    await Deno.remove(home, { recursive: true });
  });
});

Deno.test("a sealed entry whose keychain item is gone has lost its session: the entry is removed and token asks for a login", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    const first = await login(mock, { env: DESKTOP, runTool: keychain.runTool });
    keychain.items.clear(); // removed in Seahorse
    const result = await run(["token", ...flags(mock)], {
      home: first.home,
      env: DESKTOP,
      runTool: keychain.runTool,
      now: later,
    });
    assertEquals(result.code, EXIT.loginRequired);
    assertEquals(
      result.stderr,
      "warning: The cached refresh token cannot be read any more (its key is no longer in the keychain); the cached tokens were removed\n" +
        `error: The cached refresh token is gone from the keychain for ${mock.issuer}\n` +
        `hint: run "oauth-login login --issuer ${mock.issuer} --client-id cli-public" (or pass --interactive to let this command sign you in)\n`,
    );
    assertEquals(await filesUnder(`${first.home}/cache`), []);
    await Deno.remove(first.home, { recursive: true });
  });
});

// ── Logins without a person (issue 22) ─────────────────────────────────────────────────────────────

/** A token exchange at the mock with the confidential client, its subject token from `env:SUBJECT`, asking for a refresh token. */
function exchangeFlags(mock: ServedMock): string[] {
  return [
    "--issuer",
    mock.issuer,
    "--client-id",
    CONFIDENTIAL_CLIENT.id,
    "--grant",
    "token-exchange",
    "--subject-token-from",
    "env:SUBJECT",
    "--scope",
    "offline_access",
  ];
}

/** The environment of a CI job on a desktop: the client's secret and a subject token (a JWT for the mock, for ci-bot). */
function ciEnv(mock: ServedMock, env: Record<string, string> = DESKTOP): Record<string, string> {
  const b64url = (value: unknown) =>
    btoa(JSON.stringify(value)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: "https://ci.example", sub: "ci-bot", aud: mock.issuer, iat: now, exp: now + 24 * 3600 };
  return {
    ...env,
    OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret!,
    SUBJECT: `${b64url({ alg: "ES256" })}.${b64url(claims)}.c2lnbmF0dXJl`,
  };
}

Deno.test("a grant's refresh token is sealed as a person's is: login --grant and its renewals keep it only in the keychain", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    const env = ciEnv(mock);
    const login = await run(["login", ...exchangeFlags(mock)], { env, runTool: keychain.runTool });
    assertEquals(login.code, EXIT.ok, login.stderr);
    assertEquals(login.stderr, `Got a token from ${mock.issuer} for ci-bot (token exchange)\n`, "no warning");
    const home = login.home;
    const [refreshToken] = refreshTokensOf(mock);
    assert(refreshToken, "the exchange gave a refresh token");
    assertNotMatch(await everyFile(home), new RegExp(refreshToken), "no refresh token in any file");
    const entry = entryOf(home);
    assertEquals([entry.grant, entry.refreshToken, entry.sealed?.holds], ["token-exchange", undefined, [
      "refresh_token",
    ]]);
    const [[account, item]] = [...keychain.items];
    assertEquals(entry.sealed?.item, account);
    assertMatch(account, new RegExp(`^${mock.issuer}\\|${CONFIDENTIAL_CLIENT.id}\\|ci-bot\\|tokens\\|`));
    assertNotMatch(await everyFile(home), new RegExp(item.secret), "the key is in no file");
    const whoami = await run(["whoami", ...exchangeFlags(mock)], { home, env, runTool: keychain.runTool });
    assertStringIncludes(whoami.stdout, "  grant:   token-exchange, subject token from env:SUBJECT\n");
    assertStringIncludes(whoami.stdout, "  secrets: refresh token: in the keychain (sealed)\n");

    // Due: renewed with the sealed refresh token (one keychain read), the rotated one sealed again.
    mock.rotateRefreshTokens = true;
    keychain.calls.length = 0;
    const renewed = await run(["token", ...exchangeFlags(mock)], { home, env, runTool: keychain.runTool, now: later });
    assertEquals([renewed.code, renewed.stderr], [EXIT.ok, ""]);
    assertEquals(refreshes(mock).map((r) => r.form.refresh_token), [refreshToken], "the sealed refresh token was sent");
    assertEquals(keychain.calls.map((c) => `${c.command} ${c.args[0]}`), ["busctl --user", "secret-tool lookup"]);
    const rotated = refreshTokensOf(mock).find((t) => t !== refreshToken)!;
    assertNotMatch(await everyFile(home), new RegExp(`${refreshToken}|${rotated}`), "neither refresh token in a file");
    assertEquals(entryOf(home).sealed?.item, account, "the same item");
    assertEquals(mock.calls("token").filter((r) => r.form.grant_type === TOKEN_EXCHANGE).length, 1);
    assertNoSecretInArgs(keychain.calls, [item.secret, refreshToken, rotated]);
    await Deno.remove(home, { recursive: true });
  });
});

Deno.test("a grant whose sealed refresh token is gone from the keychain runs again: no person is needed, nothing is asked", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    const env = ciEnv(mock);
    const first = await run(["token", ...exchangeFlags(mock)], { env, runTool: keychain.runTool });
    assertEquals(first.code, EXIT.ok, first.stderr);
    keychain.items.clear(); // removed in Seahorse
    const again = await run(["token", ...exchangeFlags(mock)], {
      home: first.home,
      env,
      runTool: keychain.runTool,
      now: later,
    });
    assertEquals([again.code, again.stderr], [EXIT.ok, ""]);
    assertEquals(mock.calls("token").map((r) => r.form.grant_type), [TOKEN_EXCHANGE, TOKEN_EXCHANGE], "no refresh");
    assertEquals(entryOf(first.home).sealed?.holds, ["refresh_token"], "the new refresh token sealed");
    assertEquals(keychain.items.size, 1);
    await Deno.remove(first.home, { recursive: true });
  });
});

Deno.test("--token-storage keychain with no keychain stops a grant before it runs, and saves nothing", async (t) => {
  for (const command of ["login", "token"]) {
    await t.step(command, async () => {
      await withMock(async (mock) => {
        const keychain = fakeSecretService();
        const env = ciEnv(mock, { OAUTH_TOKEN_STORAGE: "keychain" });
        const result = await run([command, ...exchangeFlags(mock)], { env, runTool: keychain.runTool });
        assertEquals(result.code, EXIT.failure);
        assertEquals(
          result.stderr,
          "error: Cannot keep the tokens in the keychain (--token-storage keychain): there is no D-Bus session bus here\n" +
            "hint: run it in your desktop session (where DBUS_SESSION_BUS_ADDRESS is set), or use --token-storage auto or file\n",
        );
        assertEquals(mock.calls("token"), [], "the subject token was not sent");
        assertEquals(await filesUnder(`${result.home}/cache`).catch(() => []), []);
        await Deno.remove(result.home, { recursive: true });
      });
    });
  }
});

// ── Logout ──────────────────────────────────────────────────────────────────────────────────────

Deno.test("logout revokes the sealed refresh token and removes the keychain item with the entry", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    const first = await login(mock, { env: DESKTOP, runTool: keychain.runTool });
    const entry = entryOf(first.home);
    const [refreshToken] = refreshTokensOf(mock);
    const out = await run(["logout", ...flags(mock)], { home: first.home, env: DESKTOP, runTool: keychain.runTool });
    assertEquals(out.code, EXIT.ok, out.stderr);
    assertEquals(out.stderr, `Logged out of ${mock.issuer}\n`);
    assertEquals(mock.revoked, [refreshToken, entry.accessToken]);
    assertEquals(keychain.items.size, 0);
    assertEquals(await filesUnder(`${first.home}/cache`), []);
    await Deno.remove(first.home, { recursive: true });
  });
});

Deno.test("logout with a locked keyring removes the entry, revokes the access token, and says the refresh token was not", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    const first = await login(mock, { env: DESKTOP, runTool: keychain.runTool });
    const entry = entryOf(first.home);
    keychain.state.locked = true;
    const out = await run(["logout", ...flags(mock)], { home: first.home, env: DESKTOP, runTool: keychain.runTool });
    assertEquals(out.code, EXIT.failure);
    const file = `${first.home}/cache/${entry.sealed!.item.split("/").at(-1)}`;
    assertEquals(
      out.stderr,
      "warning: Cannot revoke the refresh token: its refresh token is in the keychain, and the keyring is locked; it was not revoked\n" +
        `warning: The keychain item of "${file}" was left; "oauth-login logout --all" removes it once the keychain answers\n` +
        `Logged out of ${mock.issuer}\n` +
        "error: A refresh token was removed here without being revoked, because the keychain that holds it did not give it\n" +
        "hint: revoke the session in your provider's console if it matters\n",
    );
    assertEquals(mock.revoked, [entry.accessToken]);
    assertEquals(await filesUnder(`${first.home}/cache`), []);
    // Once unlocked, logout --all removes the item left behind (its file is gone).
    keychain.state.locked = false;
    const all = await run(["logout", "--all"], { home: first.home, env: DESKTOP, runTool: keychain.runTool });
    assertEquals(all.code, EXIT.ok, all.stderr);
    assertEquals(all.stderr, "Removed 1 keychain item whose cached login was gone\n");
    assertEquals(keychain.items.size, 0);
    await Deno.remove(first.home, { recursive: true });
  });
});

Deno.test("logout --all and whoami --all see entries in both stores; --all removes only this folder's orphaned items of the tool's service", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    const sealed = await login(mock, { env: DESKTOP, runTool: keychain.runTool });
    const home = sealed.home;
    await login(mock, { home, env: { ...DESKTOP, OAUTH_TOKEN_STORAGE: "file" }, runTool: keychain.runTool }, [
      "--scope",
      "openid email offline_access",
    ]);
    // An item whose file is gone (deleted by hand), another folder's item, and a third file's that is no entry.
    const orphan = itemAccount({
      issuer: mock.issuer,
      clientId: "gone",
      user: "bob",
      kind: "tokens",
      path: `${home}/cache/127.0.0.1-0123456789abcdef.json`,
    });
    const elsewhere = itemAccount({
      issuer: mock.issuer,
      clientId: "c",
      kind: "tokens",
      path: "/elsewhere/x-0123456789abcdef.json",
    });
    for (const account of [orphan, elsewhere]) keychain.items.set(account, { label: "x", secret: "k" });

    const all = await run(["whoami", "--all", "--json"], { home, env: DESKTOP, runTool: keychain.runTool });
    const listed = JSON.parse(all.stdout) as { secrets: string }[];
    assertEquals(listed.map((e) => e.secrets).sort(), ["file", "keychain"]);
    const table = await run(["whoami", "--all"], { home, env: DESKTOP });
    assertMatch(
      table.stdout,
      /^PROFILE +ISSUER +CLIENT +USER +TOKEN +SECRETS\n.*keychain\n.*file\n$|file\n.*keychain\n$/s,
    );

    const out = await run(["logout", "--all"], { home, env: DESKTOP, runTool: keychain.runTool });
    assertEquals(out.code, EXIT.ok, out.stderr);
    assertStringIncludes(out.stderr, "Removed 1 keychain item whose cached login was gone\n");
    assertEquals([...keychain.items.keys()], [elsewhere], "another folder's item is left alone");
    assertEquals(await filesUnder(`${home}/cache`), []);
    await Deno.remove(home, { recursive: true });
  });
});

// ── Settings ────────────────────────────────────────────────────────────────────────────────────

Deno.test("a project's .env cannot choose where the tokens are kept; a flag, the environment and a profile can", async () => {
  await withMock(async (mock) => {
    const keychain = fakeSecretService();
    const files = { ".env": { OAUTH_TOKEN_STORAGE: "file" } };
    // Nothing of the person's own sets it (an empty variable is unset): only the .env would.
    const result = await login(mock, {
      env: { ...DESKTOP, OAUTH_TOKEN_STORAGE: "" },
      runTool: keychain.runTool,
      files,
    });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertStringIncludes(
      result.stderr,
      'warning: The .env key "OAUTH_TOKEN_STORAGE" is ignored: where your tokens are kept is yours to choose (in the environment, a profile or with --token-storage), never a project file\'s\n',
    );
    assert(entryOf(result.home).sealed, "sealed as auto says, not kept in the file as the .env asked");
    // A profile's token_storage, and a flag over the environment.
    const home = await Deno.makeTempDir();
    Deno.mkdirSync(`${home}/config/oauth-login`, { recursive: true, mode: 0o700 });
    Deno.writeTextFileSync(
      `${home}/config/oauth-login/config.toml`,
      `[work]\nissuer = "${mock.issuer}"\nclient_id = "cli-public"\ntoken_storage = "file"\n`,
      { mode: 0o600 },
    );
    const byProfile = await run(["login", "--profile", "work"], {
      home,
      env: { ...DESKTOP, OAUTH_TOKEN_STORAGE: "" },
      runTool: keychain.runTool,
      browser: (url) => scriptedBrowser(url),
    });
    assertEquals(byProfile.code, EXIT.ok, byProfile.stderr);
    assertEquals(entryOf(home).keptInFile, "chosen", "the profile's token_storage");
    const byFlag = await run(["login", "--profile", "work", "--token-storage", "keychain"], {
      home,
      env: { ...DESKTOP, OAUTH_TOKEN_STORAGE: "file" },
      runTool: keychain.runTool,
      browser: (url) => scriptedBrowser(url),
    });
    assertEquals(byFlag.code, EXIT.ok, byFlag.stderr);
    assert(entryOf(home).sealed, "the flag over the environment and the profile");
    await Deno.remove(home, { recursive: true });
    const bad = await run(["token", ...flags(mock), "--token-storage", "disk"], { env: DESKTOP });
    assertEquals(bad.code, EXIT.usage);
    assertEquals(
      bad.stderr,
      'error: The token storage "disk" is not auto, keychain or file\n' +
        "hint: set --token-storage to auto (the keychain where one answers, else the file), keychain or file\n",
    );
    for (const home of [result.home, bad.home]) await Deno.remove(home, { recursive: true });
  });
});

// ── The general API: secrets of a file, by kind ─────────────────────────────────────────────────

Deno.test("sealSecrets and sealedSecret keep any file's secrets by kind (a registered client's secret) under one item", async () => {
  const keychain = fakeSecretService();
  const deps = {
    os: "linux",
    env: (n: string) => (DESKTOP as Record<string, string>)[n],
    runTool: keychain.runTool,
    signal: new AbortController().signal,
  } as Deps;
  const owner = {
    issuer: "https://idp.example",
    clientId: "dyn-1",
    kind: "client" as const,
    path: "/home/alice/.cache/oauth-login/clients/idp.example-0123456789abcdef.json",
  };
  const sealed = await sealSecrets(owner, { client_secret: "s3cret-of-a-registered-client" }, deps);
  assertEquals(sealed.holds, ["client_secret"]);
  assertEquals(
    sealed.item,
    "https://idp.example|dyn-1|-|client|/home/alice/.cache/oauth-login/clients/idp.example-0123456789abcdef.json",
  );
  assertEquals(itemFile(sealed.item), owner.path);
  assertNotMatch(JSON.stringify(sealed), /s3cret/);
  assertEquals(await sealedSecret(sealed, "client_secret", deps), "s3cret-of-a-registered-client");
  assertEquals(await sealedSecret(sealed, "refresh_token", deps), undefined);
  // Another process (no key in memory) reads the key from the keychain once.
  const other = { ...deps } as Deps;
  assertEquals(await openSealed(sealed, other), { client_secret: "s3cret-of-a-registered-client" });
  assertEquals(keychain.calls.filter((c) => c.args[0] === "lookup").length, 1);
  // A sealed set moved to another item (or edited) does not open.
  const moved = { ...sealed, item: sealed.item.replace("dyn-1", "dyn-2") };
  keychain.items.set(moved.item, keychain.items.get(sealed.item)!);
  let error: unknown;
  await openSealed(moved, { ...deps } as Deps).catch((e) => error = e);
  assertMatch(String(error), /the key in the keychain does not open it/);
});

Deno.test("item accounts: one per file, every component escaped so that none can pose as another", () => {
  const base = { issuer: "https://idp.example", clientId: "app", kind: "tokens" as const };
  const a = itemAccount({ ...base, user: "a|b", path: "/c/x-0123456789abcdef.json" });
  const b = itemAccount({ ...base, user: "a", path: "/c/x-0123456789abcdef.json" });
  assertEquals(a, "https://idp.example|app|a%7Cb|tokens|/c/x-0123456789abcdef.json");
  assert(a !== b);
  assertEquals(
    itemAccount({ ...base, user: `O'Brien "Bob" \\ %\n`, path: "/c/y-0123456789abcdef.json" }),
    "https://idp.example|app|O%27Brien %22Bob%22 %5C %25%0A|tokens|/c/y-0123456789abcdef.json",
  );
  assertEquals(itemFile("https://idp.example|app|u|tokens|/c/%7Cx.json"), "/c/|x.json");
  assertEquals(itemFile("not one of ours"), undefined);
});

// ── macOS and Windows: the command lines, against fakes of their tools ───────────────────────────

for (
  const [os, make, tool] of [["darwin", fakeSecurity, "/usr/bin/security"], [
    "windows",
    fakePowerShell,
    "powershell.exe",
  ]] as const
) {
  Deno.test(`${os}: login, a refresh through the keychain, logout and logout --all with ${tool}, never a secret in an argument`, async () => {
    await withMock(async (mock) => {
      const keychain = make();
      const env = { OAUTH_TOKEN_STORAGE: "auto" };
      const first = await login(mock, { os, env, runTool: keychain.runTool, fetch: dpopFetch }, ["--dpop"]);
      assertEquals(first.code, EXIT.ok, first.stderr);
      assertEquals(first.stderr, cleanLoginStderr(first.opened[0], new URL(mock.issuer).host));
      const home = first.home;
      const entry = entryOf(home);
      assertEquals(entry.sealed?.holds, ["dpop_key", "refresh_token"]);
      const [[account, item]] = [...keychain.items];
      assertEquals(os === "windows" ? account.replace(/^oauth-login:/, "") : account, entry.sealed?.item);
      assertMatch(item.secret, /^[A-Za-z0-9_-]{43}$/);
      assertStringIncludes(item.label, `oauth-login: key to the cached tokens of alice@example.com at ${mock.issuer}`);

      mock.rotateRefreshTokens = true;
      const [original] = refreshTokensOf(mock);
      const refreshed = await run(["token", ...flags(mock), "--dpop"], {
        home,
        os,
        env,
        runTool: keychain.runTool,
        now: later,
        fetch: dpopFetch,
      });
      assertEquals(refreshed.code, EXIT.ok, refreshed.stderr);
      assertEquals(refreshes(mock).map((r) => r.form.refresh_token), [original]);
      const files = await everyFile(home);
      assertNotMatch(files, new RegExp(refreshTokensOf(mock).join("|")));
      assertNoSecretInArgs(keychain.calls, [item.secret, ...refreshTokensOf(mock)]);
      if (os === "windows") {
        for (const call of keychain.calls) {
          assertNotMatch(decodedScript(call.args), new RegExp(item.secret), "no secret in a script");
        }
      }

      const orphan = itemAccount({
        issuer: mock.issuer,
        clientId: "gone",
        kind: "tokens",
        path: `${home}/cache/g-0123456789abcdef.json`,
      });
      keychain.items.set(os === "windows" ? `oauth-login:${orphan}` : orphan, { label: "x", secret: "k" });
      const out = await run(["logout", "--all"], { home, os, env, runTool: keychain.runTool });
      assertEquals(out.code, EXIT.ok, out.stderr);
      assertStringIncludes(out.stderr, "Removed 1 keychain item whose cached login was gone\n");
      assertEquals(keychain.items.size, 0);
      await Deno.remove(home, { recursive: true });
    });
  });

  Deno.test(`${os}: a keychain that refuses (locked, no logon session) is auto's fallback and keychain's error`, async () => {
    await withMock(async (mock) => {
      const keychain = make();
      keychain.state.locked = true;
      const reason = os === "darwin"
        ? "the login keychain is locked, and no one can be asked to unlock it here"
        : "Credential Manager has no logon session here";
      const auto = await login(mock, { os, env: { OAUTH_TOKEN_STORAGE: "auto" }, runTool: keychain.runTool });
      assertEquals(auto.code, EXIT.ok, auto.stderr);
      assertStringIncludes(auto.stderr, fallback(reason));
      const strict = await login(mock, { os, env: { OAUTH_TOKEN_STORAGE: "keychain" }, runTool: keychain.runTool });
      assertEquals(strict.code, EXIT.failure);
      assertStringIncludes(
        strict.stderr,
        `error: Cannot keep the tokens in the keychain (--token-storage keychain): ${reason}\n`,
      );
      assertEquals(strict.opened, [], "before the browser");
      for (const home of [auto.home, strict.home]) await Deno.remove(home, { recursive: true });
    });
  });
}

Deno.test("security -i: each value quoted so that Apple's line splitter gives it back whole", async () => {
  const keychain = fakeSecurity();
  const awkward = ['a "quoted" name', "back\\slash", "it's", "tab\there", "ünï ✓", "-w", "x y", ""];
  for (const value of awkward) {
    const deps = {
      os: "darwin",
      env: () => undefined,
      runTool: keychain.runTool,
      signal: new AbortController().signal,
    } as unknown as Deps;
    const owner = {
      issuer: "https://idp.example",
      clientId: value,
      user: value,
      kind: "tokens" as const,
      path: "/c/x.json",
    };
    keychain.items.clear();
    await sealSecrets(owner, { refresh_token: "r" }, deps);
    const [[account, item]] = [...keychain.items];
    assertEquals(account, itemAccount(owner), JSON.stringify(value));
    assertStringIncludes(item.label, `at https://idp.example (client ${value.replace("\t", " ")})`);
  }
});

// ── A registered client's secret ────────────────────────────────────────────────────────────────

Deno.test("a client secret a server issued at registration is sealed like a refresh token; used sealed; registered again when its item is gone", async () => {
  const mock = serveMockIssuer({ registration: true, registrationIssuesSecret: true });
  const api = serveResourceServer({
    authorizationServers: [mock.issuer],
    verify: (token) => {
      const info = mock.accessTokens.get(token);
      return info ? { scope: info.scope, audience: info.resource, sub: info.sub } : undefined;
    },
  });
  const keychain = fakeSecretService();
  const home = await Deno.makeTempDir({ prefix: "oauth-login-keychain-" });
  const fetchApi = () =>
    run(["fetch", api.url], {
      home,
      browser: scriptedBrowser,
      interactive: true,
      env: DESKTOP,
      runTool: keychain.runTool,
    });
  const registrationFile = async () => (await filesUnder(`${home}/cache`)).filter((n) => n.endsWith(".client.json"));
  try {
    const first = await fetchApi();
    assertEquals(first.code, EXIT.ok, first.stderr);
    const secret = mock.clients.at(-1)!.secret!;
    assert(secret, "the mock issued a secret");
    const [file] = await registrationFile();
    const registration = JSON.parse(await Deno.readTextFile(`${home}/cache/${file}`));
    assertEquals(registration.clientSecret, undefined);
    assertEquals(registration.sealed.holds, ["client_secret"]);
    assertNotMatch(await everyFile(home), new RegExp(secret), "the client secret is in no file");
    const item = keychain.items.get(registration.sealed.item)!;
    assertEquals(
      item.label,
      `oauth-login: key to the client's secret at ${mock.issuer} (client ${registration.clientId})`,
    );
    assertEquals(registration.sealed.item, `${mock.issuer}|${registration.clientId}|-|client|${home}/cache/${file}`);
    assertNoSecretInArgs(keychain.calls, [secret, item.secret]);
    assertEquals(mock.calls("token").map((r) => r.clientAuth), ["client_secret_basic"]);

    // Without the login's entry, the remembered client signs in again: its secret opened from the keychain.
    for (const name of await filesUnder(`${home}/cache`)) {
      if (!name.endsWith(".client.json")) await Deno.remove(`${home}/cache/${name}`);
    }
    const again = await fetchApi();
    assertEquals(again.code, EXIT.ok, again.stderr);
    assertEquals(mock.calls("register").length, 1, "the same client");
    assertEquals(mock.calls("token").map((r) => r.clientAuth), ["client_secret_basic", "client_secret_basic"]);

    // Its item gone (the person cleared their keychain): the secret cannot be had, so the tool registers again.
    keychain.items.clear();
    for (const name of await filesUnder(`${home}/cache`)) {
      if (!name.endsWith(".client.json")) await Deno.remove(`${home}/cache/${name}`);
    }
    const third = await fetchApi();
    assertEquals(third.code, EXIT.ok, third.stderr);
    assertEquals(mock.calls("register").length, 2, "registered again");
    const [after] = await registrationFile();
    assertEquals(JSON.parse(await Deno.readTextFile(`${home}/cache/${after}`)).clientId, mock.clients.at(-1)!.id);
  } finally {
    await Deno.remove(home, { recursive: true });
    await api.close();
    await mock.close();
  }
});
