/**
 * The keychain (issue 21) against a real GNOME Keyring through the real `secret-tool` and `busctl`:
 * each test starts a private session bus (`dbus-run-session`) with a throwaway keyring unlocked from
 * a password on stdin (tests/keychain/session.sh; never the machine's own keyrings). A login leaves no
 * refresh token or private key in any file under the cache folder; `token` after expiry refreshes
 * through the keychain; `logout` removes the items, `logout --all` the orphaned ones; with no session
 * bus, a dead one, a locked keyring and a frozen keyring daemon, `login` falls back to the file (auto)
 * or fails (keychain) with its message, the keychain's part within its 2 s deadline. And the tool as a
 * process under deno.json's task permissions, every keychain tool's arguments read from /proc: no
 * secret in any of them.
 *
 * Optional suite (tests/_optional.ts): prepared by tests/keychain/prepare.sh (Debian's gnome-keyring,
 * libsecret-tools, dbus); skipped with the reason where it cannot run, and failing in CI.
 *
 * @module
 */
import { type Deps, EXIT, testing, type TokenSet } from "../login.ts";
const { runTool } = testing;
import { PUBLIC_CLIENT, type ServedMock } from "./mock_issuer.ts";
import { cleanLoginStderr, filesUnder, type Run, run, type RunOptions, scriptedBrowser, withMock } from "./_harness.ts";
import { optionalTest } from "./_optional.ts";
import { assert, assertEquals, assertMatch, assertNotMatch, assertStringIncludes } from "./assert.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const SESSION = `${ROOT}tests/keychain/session.sh`;

/** Why the suite cannot run here, or undefined. */
function missing(): string | undefined {
  if (Deno.build.os !== "linux") return "the keyring suite runs on Linux";
  // busctl (systemd) is optional: the tool reads the keyring's Locked property with dbus-send where it is missing.
  for (const tool of ["dbus-run-session", "dbus-send", "gnome-keyring-daemon", "secret-tool"]) {
    const found = (Deno.env.get("PATH") ?? "").split(":").some((dir) => {
      try {
        return Deno.statSync(`${dir}/${tool}`).isFile;
      } catch {
        return false;
      }
    });
    if (!found) return `${tool} is not installed (run tests/keychain/prepare.sh)`;
  }
  return undefined;
}

const skip = missing();

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** A private session bus with an unlocked throwaway GNOME Keyring. */
interface Keyring {
  address: string;
  /** The keyring daemon's process id (to freeze it). */
  pid: number;
  /** Runs a command on this bus (dbus-send, secret-tool), returning its exit code and output. */
  sh(command: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** The accounts of the items of the tool's service, as secret-tool lists them. */
  accounts(): Promise<string[]>;
  /** Locks the default keyring (Secret Service `Lock`; no prompt). */
  lock(): Promise<void>;
}

/** Runs `fn` with a fresh keyring; the bus, the daemon and their files end with it. */
async function withKeyring(fn: (keyring: Keyring) => Promise<void>): Promise<void> {
  const data = await Deno.makeTempDir({ prefix: "oauth-login-keyring-" });
  const child = new Deno.Command("dbus-run-session", {
    args: ["--", "bash", SESSION, data],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode("keyring-test-password\n"));
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let said = "";
  const bound = setTimeout(() => child.kill("SIGKILL"), 20_000);
  while (!said.includes("READY\n")) {
    const { value, done } = await lines.read();
    if (done) break;
    said += value;
  }
  clearTimeout(bound);
  const stderr = child.stderr.pipeThrough(new TextDecoderStream());
  const address = said.match(/^DBUS_SESSION_BUS_ADDRESS=(.*)$/m)?.[1];
  const pid = Number(said.match(/^KEYRING_PID=(\d+)$/m)?.[1]);
  try {
    if (!address || !pid) throw new Error(`the keyring session did not start: ${said}`);
    const sh = async (command: string, ...args: string[]) => {
      const output = await new Deno.Command(command, {
        args,
        env: { DBUS_SESSION_BUS_ADDRESS: address },
        stdin: "null",
      }).output();
      const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
      return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
    };
    const keyring: Keyring = {
      address,
      pid,
      sh,
      accounts: async () => {
        const found = await sh("secret-tool", "search", "--all", "service", "oauth-login");
        return [...found.stderr.matchAll(/^attribute\.account = (.*)$/gm)].map((m) => m[1]);
      },
      lock: async () => {
        const locked = await sh(
          "dbus-send",
          "--session",
          "--print-reply",
          "--dest=org.freedesktop.secrets",
          "/org/freedesktop/secrets",
          "org.freedesktop.Secret.Service.Lock",
          "array:objpath:/org/freedesktop/secrets/collection/login",
        );
        assertEquals(locked.code, 0, locked.stderr);
      },
    };
    await fn(keyring);
  } finally {
    await writer.close().catch(() => {});
    await lines.cancel().catch(() => {});
    await stderr.cancel().catch(() => {});
    await child.status;
    await Deno.remove(data, { recursive: true });
  }
}

/** The real runner, with the keychain tools run on the keyring's bus (`env` puts the address in their environment). */
function onBus(keyring: Keyring | { address: string }): NonNullable<Deps["runTool"]> {
  return (command, args, options) =>
    runTool("env", [`DBUS_SESSION_BUS_ADDRESS=${keyring.address}`, command, ...args], options);
}

/** The tool's environment: --token-storage `storage`, and the bus (when there is one). */
function envOf(storage: string, keyring?: { address: string }): Record<string, string> {
  return { OAUTH_TOKEN_STORAGE: storage, ...(keyring ? { DBUS_SESSION_BUS_ADDRESS: keyring.address } : {}) };
}

function flags(mock: ServedMock): string[] {
  return ["--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id];
}

async function login(mock: ServedMock, options: RunOptions, extra: string[] = []): Promise<Run> {
  // A server that does DPoP says so (RFC 9449 §5.1); `--dpop` is refused at one that does not.
  if (extra.includes("--dpop")) mock.metadata.dpop_signing_alg_values_supported = ["ES256"];
  return await run(["login", ...flags(mock), ...extra], { browser: (url) => scriptedBrowser(url), ...options });
}

/** The mock's token endpoint as a DPoP server answers a request with a proof: token_type DPoP. */
async function dpopFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
  const request = new Request(input, init);
  const response = await fetch(request);
  if (new URL(request.url).pathname !== "/token" || !request.headers.has("dpop") || !response.ok) return response;
  return Response.json({ ...await response.json(), token_type: "DPoP" });
}

/** The one entry of a cache folder. */
function entryIn(cache: string): { path: string; entry: TokenSet } {
  const names = [...Deno.readDirSync(cache)].map((e) => e.name).filter((n) => n.endsWith(".json"));
  assertEquals(names.length, 1, names.join(", "));
  return { path: `${cache}/${names[0]}`, entry: JSON.parse(Deno.readTextFileSync(`${cache}/${names[0]}`)) };
}

/** Every file under a folder, as one text. */
async function everyFile(dir: string): Promise<string> {
  return (await Promise.all((await filesUnder(dir)).map((name) => Deno.readTextFile(`${dir}/${name}`)))).join("\n");
}

const later = () => Date.now() + 2 * 3600_000;

function refreshes(mock: ServedMock) {
  return mock.calls("token").filter((r) => r.form.grant_type === "refresh_token");
}

/** auto's warning when no keychain answers. */
function fallback(reason: string, what = "refresh token"): string {
  return `warning: Keeping the ${what} in the token cache file (readable only by you), not in the keychain: ${reason}\n`;
}

// ── An unlocked keyring ─────────────────────────────────────────────────────────────────────────

Deno.test(optionalTest({
  name:
    "GNOME Keyring: a login leaves no refresh token or private key in any file; token after expiry refreshes through the keychain; logout removes the items",
  fn: async () => {
    await withKeyring(async (keyring) => {
      await withMock(async (mock) => {
        const options = { env: envOf("auto", keyring), runTool: onBus(keyring), fetch: dpopFetch };
        const first = await login(mock, options, ["--dpop"]);
        assertEquals(first.code, EXIT.ok, first.stderr);
        assertEquals(first.stderr, cleanLoginStderr(first.opened[0], new URL(mock.issuer).host), "no warning");
        const home = first.home;
        const cache = `${home}/cache`;
        const [refreshToken] = mock.refreshTokens.keys();
        const { entry } = entryIn(cache);
        assertEquals(entry.sealed?.holds, ["dpop_key", "refresh_token"]);
        const files = await everyFile(cache);
        assertNotMatch(files, new RegExp(refreshToken), "no refresh token in any file of the cache");
        assertNotMatch(files, /"d":/, "no private key in any file of the cache");
        assertEquals(await keyring.accounts(), [entry.sealed!.item], "one item, the entry's");
        const key = await keyring.sh("secret-tool", "lookup", "service", "oauth-login", "account", entry.sealed!.item);
        assertMatch(key.stdout, /^[A-Za-z0-9_-]{43}$/);
        assertNotMatch(files, new RegExp(key.stdout), "the key is only in the keychain");

        mock.rotateRefreshTokens = true;
        const token = await run(["token", ...flags(mock), "--dpop"], { ...options, home, now: later });
        assertEquals(token.code, EXIT.ok, token.stderr);
        assertEquals(token.stderr, "");
        assertEquals(refreshes(mock).map((r) => r.form.refresh_token), [refreshToken], "read from the keychain");
        const rotated = [...mock.refreshTokens.keys()].find((t) => t !== refreshToken)!;
        assertNotMatch(await everyFile(cache), new RegExp(`${refreshToken}|${rotated}|"d":`));
        assertEquals(await keyring.accounts(), [entry.sealed!.item], "the same item after the refresh");

        const out = await run(["logout", ...flags(mock)], { ...options, home });
        assertEquals(out.code, EXIT.ok, out.stderr);
        assertEquals(mock.revoked[0], rotated, "the sealed refresh token was revoked");
        assertEquals(await keyring.accounts(), [], "logout removed the item");
        assertEquals(await filesUnder(cache), []);
        await Deno.remove(home, { recursive: true });
      });
    });
  },
}, skip));

Deno.test(optionalTest({
  name: "GNOME Keyring: logout --all removes the items whose cached login is gone, and leaves other folders' items",
  fn: async () => {
    await withKeyring(async (keyring) => {
      await withMock(async (mock) => {
        const options = { env: envOf("auto", keyring), runTool: onBus(keyring) };
        const first = await login(mock, options);
        const { path, entry } = entryIn(`${first.home}/cache`);
        Deno.removeSync(path); // deleted by hand: its item is left
        const elsewhere = `${mock.issuer}|c|-|tokens|/elsewhere/x-0123456789abcdef.json`;
        const stored = new Deno.Command("env", {
          args: [`DBUS_SESSION_BUS_ADDRESS=${keyring.address}`, "secret-tool", "store", "--label=other"]
            .concat(["service", "oauth-login", "account", elsewhere]),
          stdin: "piped",
        }).spawn();
        const w = stored.stdin.getWriter();
        await w.write(new TextEncoder().encode("k"));
        await w.close();
        assertEquals((await stored.status).code, 0);
        const out = await run(["logout", "--all"], { ...options, home: first.home });
        assertEquals(out.code, EXIT.ok, out.stderr);
        assertEquals(out.stderr, "Removed 1 keychain item whose cached login was gone\n");
        assertEquals(await keyring.accounts(), [elsewhere]);
        assert(entry.sealed);
        await Deno.remove(first.home, { recursive: true });
      });
    });
  },
}, skip));

// ── Keyrings that cannot be used: within the deadline, the fallback or the error ─────────────────

/** A login under auto and one under keychain; each must end as `expect` says, the keychain's part bounded. */
async function bothModes(
  mock: ServedMock,
  options: RunOptions,
  reason: string,
  hint: string,
  bounds: { min: number; max: number },
): Promise<void> {
  const auto = await login(mock, { ...options, env: { ...options.env, OAUTH_TOKEN_STORAGE: "auto" } });
  assertEquals(auto.code, EXIT.ok, auto.stderr);
  assertStringIncludes(auto.stderr, fallback(reason));
  assertEquals(entryIn(`${auto.home}/cache`).entry.keptInFile, reason);
  const strict = await login(mock, { ...options, env: { ...options.env, OAUTH_TOKEN_STORAGE: "keychain" } });
  assertEquals(strict.code, EXIT.failure, strict.stderr);
  assertEquals(
    strict.stderr,
    `error: Cannot keep the tokens in the keychain (--token-storage keychain): ${reason}\nhint: ${hint}\n`,
  );
  assertEquals(strict.opened, [], "it failed before the browser opened");
  // keychain's run is the keychain part alone (nothing else happens before it fails).
  assert(strict.ms >= bounds.min && strict.ms < bounds.max, `the keychain part took ${Math.round(strict.ms)} ms`);
  for (const home of [auto.home, strict.home]) await Deno.remove(home, { recursive: true });
}

Deno.test(optionalTest({
  name:
    "GNOME Keyring: with no session bus, or a dead one, login falls back to the file (auto) or fails (keychain) at once",
  fn: async () => {
    await withMock(async (mock) => {
      const none = { env: {}, runTool: onBus({ address: "" }) };
      await bothModes(
        mock,
        none,
        "there is no D-Bus session bus here",
        "run it in your desktop session (where DBUS_SESSION_BUS_ADDRESS is set), or use --token-storage auto or file",
        { min: 0, max: 2000 },
      );
      const dead = { address: "unix:path=/nonexistent/oauth-login-test-bus" };
      await bothModes(
        mock,
        { env: envOf("auto", dead), runTool: onBus(dead) },
        "the D-Bus session bus does not answer",
        "run it in your desktop session (where DBUS_SESSION_BUS_ADDRESS is set), or use --token-storage auto or file",
        { min: 0, max: 2000 },
      );
    });
  },
}, skip));

Deno.test(optionalTest({
  name:
    "GNOME Keyring: a locked keyring is read without a prompt: login falls back to the file (auto) or fails (keychain) at once",
  fn: async () => {
    await withKeyring(async (keyring) => {
      await keyring.lock();
      await withMock(async (mock) => {
        await bothModes(
          mock,
          { env: envOf("auto", keyring), runTool: onBus(keyring) },
          "the keyring is locked",
          'unlock it (log in to the desktop, or open "Passwords and Keys"), or use --token-storage auto or file',
          { min: 0, max: 2000 },
        );
      });
    });
  },
}, skip));

Deno.test(optionalTest({
  name:
    "GNOME Keyring: a frozen keyring daemon (no answer at all): the probe is killed at 2 s, then the fallback (auto) or the error (keychain)",
  fn: async () => {
    await withKeyring(async (keyring) => {
      Deno.kill(keyring.pid, "SIGSTOP");
      try {
        await withMock(async (mock) => {
          await bothModes(
            mock,
            { env: envOf("auto", keyring), runTool: onBus(keyring) },
            "the keychain did not answer within 2 seconds",
            "check that it is not waiting for a password on your desktop, or use --token-storage auto or file",
            { min: 2000, max: 2800 },
          );
        });
      } finally {
        Deno.kill(keyring.pid, "SIGCONT");
      }
    });
  },
}, skip));

// ── As a process, under the tasks' permissions, with the tools' arguments read from /proc ─────────

/** A stand-in for a keychain tool on PATH: it appends its own /proc/PID/cmdline to $CMDLINE_LOG, then runs the real one. */
function recordingTool(dir: string, tool: string): void {
  if (!exists(`/usr/bin/${tool}`)) return; // (busctl only with systemd)
  Deno.writeTextFileSync(
    `${dir}/${tool}`,
    `#!/bin/sh\ntr '\\000' ' ' </proc/$$/cmdline >>"$CMDLINE_LOG"\necho >>"$CMDLINE_LOG"\nexec /usr/bin/${tool} "$@"\n`,
    { mode: 0o755 },
  );
}

/** `deno run -q -P=NAME login.ts ARGS` (deno.json's permission sets), in `work`, with only `env`. */
async function task(
  permissions: string,
  args: string[],
  env: Record<string, string>,
  work: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "--config", `${ROOT}deno.json`, `-P=${permissions}`, `${ROOT}login.ts`, ...args],
    cwd: work,
    clearEnv: true,
    env: {
      HOME: Deno.env.get("HOME") ?? work, // Deno's own cache
      ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
      NO_COLOR: "1",
      DENO_NO_UPDATE_CHECK: "1",
      ...env,
    },
    stdin: "null",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

Deno.test(optionalTest({
  name:
    "GNOME Keyring: login, token, whoami and logout as processes under deno.json's task permissions; no secret in any keychain tool's arguments (/proc)",
  fn: async () => {
    await withKeyring(async (keyring) => {
      await withMock(async (mock) => {
        const work = await Deno.makeTempDir({ prefix: "oauth-login-keyring-task-" });
        const bin = `${work}/bin`;
        Deno.mkdirSync(bin);
        for (const tool of ["secret-tool", "busctl", "dbus-send"]) recordingTool(bin, tool);
        // The browser: found on PATH as xdg-open is; it follows the redirects (the mock approves at once).
        Deno.writeTextFileSync(`${bin}/xdg-open`, '#!/bin/sh\nexec curl -sf -L -o /dev/null "$1"\n', { mode: 0o755 });
        const log = `${work}/cmdlines`;
        const env = {
          PATH: `${bin}:${Deno.env.get("PATH")}`,
          DISPLAY: ":0",
          DBUS_SESSION_BUS_ADDRESS: keyring.address,
          OAUTH_LOGIN_CACHE: `${work}/cache`,
          OAUTH_ISSUER: mock.issuer,
          OAUTH_CLIENT_ID: PUBLIC_CLIENT.id,
          CMDLINE_LOG: log,
        };
        const first = await task("login", ["login"], env, work);
        assertEquals(first.code, EXIT.ok, first.stderr);
        assertNotMatch(first.stderr, /warning|error/);
        const { path, entry } = entryIn(`${work}/cache`);
        assert(entry.sealed, "sealed under the task's permissions");
        // Expired: the next token refreshes through the keychain.
        Deno.writeTextFileSync(path, JSON.stringify({ ...entry, expiresAt: Date.now() - 1000 }));
        const token = await task("login", ["token"], env, work);
        assertEquals(token.code, EXIT.ok, token.stderr);
        assertEquals(refreshes(mock).length, 1);
        const whoami = await task("whoami", ["whoami"], env, work);
        assertEquals(whoami.code, EXIT.ok, whoami.stderr);
        assertStringIncludes(whoami.stdout, "  secrets: refresh token: in the keychain (sealed)\n");
        const key = (await keyring.sh("secret-tool", "lookup", "service", "oauth-login", "account", entry.sealed.item))
          .stdout;
        const issued = [...mock.refreshTokens.keys()];
        const out = await task("cache", ["logout"], env, work);
        assertEquals(out.code, EXIT.ok, out.stderr);
        assertEquals(await keyring.accounts(), []);

        const cmdlines = Deno.readTextFileSync(log);
        for (const call of ["secret-tool store", "secret-tool lookup", "secret-tool clear"]) {
          assertStringIncludes(cmdlines, call);
        }
        assertMatch(cmdlines, /busctl --user get-property|dbus-send --session --print-reply=literal/, "the probe");
        const secrets = [key, ...issued, ...mock.revoked, token.stdout.trim()].filter((s) => s);
        assert(secrets.length >= 4);
        for (const secret of secrets) assert(!cmdlines.includes(secret), "a secret in a keychain tool's arguments");
        await Deno.remove(work, { recursive: true });
      });
    });
  },
}, skip));
