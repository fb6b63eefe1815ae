/**
 * What a server's answers cannot make the tool do (an outsider's third attack, each case a class): a
 * device authorization answer that sends the person to another host (for a project's server) or hides
 * another host in the QR code; a preset's own hosts getting the token or secret of a server given by
 * its endpoints (GitHub Enterprise under `--provider github`); one pushed `request_uri` handed to two
 * browsers; an absurd PAR `expires_in`; invisible and line-separating characters in server text.
 *
 * @module
 */
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { EXIT } from "../login.ts";
import { CONFIDENTIAL_CLIENT, PUBLIC_CLIENT, type ServedMock } from "./mock_issuer.ts";
import { authorizationUrl, cleanUp, hit, keyboard, reshapeAnswer, run, scriptedBrowser, withMock } from "./_harness.ts";

function flags(mock: ServedMock, ...extra: string[]): string[] {
  return ["--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id, ...extra];
}

/** The folder of a cloned project, where the person runs the tool; its `.env` is the project's. */
const REPO = "/home/alice/repo";

// ── The device flow ──────────────────────────────────────────────────────────────────────────

Deno.test(
  "device flow: a server a project file (.env) chose cannot send the person to sign in at another host (verification_uri)",
  async () => {
    await withMock(async (evil) => {
      // The project's server relays a user code it got from a real provider's device endpoint.
      reshapeAnswer(evil, "/device_authorization", (body) => ({
        ...body,
        verification_uri: "https://github.com/login/device",
        verification_uri_complete: undefined,
      }));
      const result = await run(["login", "--flow", "device", "--no-browser"], {
        cwd: REPO,
        files: { ".env": { OAUTH_ISSUER: evil.issuer, OAUTH_CLIENT_ID: PUBLIC_CLIENT.id } },
        sleep: () => Promise.resolve(),
      });
      await cleanUp(result);
      // As checkProjectMetadata refuses endpoints off the host where the person signs in: refused, exit 2,
      // and the tool never tells the person to type the project's code at github.com.
      assert(
        !result.stderr.includes("https://github.com/login/device"),
        `the tool sent the person to github.com for a project file's server:\n${result.stderr}`,
      );
      assertEquals(result.code, EXIT.usage, result.stderr);
      assertStringIncludes(
        result.stderr,
        `error: The issuer ${evil.issuer}, from a project file (.env), sends you to github.com to enter a code, not to ` +
          `127.0.0.1:${evil.port} where it signs you in\n` +
          "hint: if you trust this server, set OAUTH_ISSUER in the environment or pass --issuer\n",
      );
    });
  },
);

Deno.test(
  "device flow: the QR code opens only an address on the host the person is told to check",
  async () => {
    await withMock(async (mock) => {
      const other = "https://login.evil.example/device?user_code=WDJB-MJHT";
      reshapeAnswer(mock, "/device_authorization", (body) => ({ ...body, verification_uri_complete: other }));
      const result = await run(flags(mock, "--flow", "device", "--no-browser"), {
        sleep: () => Promise.resolve(),
        stderrIsTerminal: true,
        columns: 200,
      });
      await cleanUp(result);
      assertEquals(result.code, EXIT.ok, result.stderr);
      const { default: encodeQR } = await import("npm:qr@0.7.0");
      const qrOfOther = encodeQR(other, "ascii", { ecc: "low" }).split("\n").filter((line: string) => line !== "");
      const shown = qrOfOther.every((line: string) => result.stderr.includes(line));
      // The person is told to check one host (the mock's); a phone's camera gets another, unseen.
      assertStringIncludes(result.stderr, `Check that the address is your provider's (127.0.0.1:${mock.port})`);
      assert(
        !shown,
        "the QR code encodes verification_uri_complete on login.evil.example, while the terminal asks the person " +
          `to check only 127.0.0.1:${mock.port}:\n${result.stderr}`,
      );
    });
  },
);

// ── The presets' own hosts ───────────────────────────────────────────────────────────────────

Deno.test(
  "presets: with --provider github and the person's own endpoints (GitHub Enterprise), GitHub's hosts get neither its token nor its secret",
  async (t) => {
    // `github` plays github.com / api.github.com (every preset URL is rebased onto it); `ghe` is the
    // person's own server, named by flags, which the README says win over the preset.
    await withMock(async (github) => {
      await withMock(async (ghe) => {
        const env = { OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret! };
        const own = [
          "--provider",
          "github",
          "--client-id",
          CONFIDENTIAL_CLIENT.id,
          "--client-auth",
          "client_secret_basic",
          "--authorization-endpoint",
          `${ghe.issuer}/authorize`,
          "--token-endpoint",
          `${ghe.issuer}/token`,
          "--scope",
          "openid",
        ];
        const presetBase = new URL(github.issuer).origin;
        await t.step(
          "login with the authorization and token endpoints given: who logged in is not asked at api.github.com",
          async () => {
            const login = await run(["login", ...own], { env, presetBase, browser: scriptedBrowser });
            await cleanUp(login);
            assertEquals(login.code, EXIT.ok, login.stderr);
            const leaked = github.requests.filter((r) => (r.headers.authorization ?? "").length > 0);
            assertEquals(
              leaked.map((r) => `${r.method} ${r.path}`),
              [],
              "the GHE access token went to the github preset's userinfo host",
            );
          },
        );
        github.requests.length = 0;
        await t.step("logout with every endpoint given: GitHub's token deletion API gets no request", async () => {
          const all = [...own, "--userinfo-endpoint", `${ghe.issuer}/userinfo`];
          const login = await run(["login", ...all], { env, presetBase, browser: scriptedBrowser });
          assertEquals(login.code, EXIT.ok, login.stderr);
          assertEquals(github.requests.length, 0, "the login itself stayed on the person's server");
          const logout = await run(["logout", ...all], { env, presetBase, home: login.home });
          await cleanUp(logout);
          const sent = github.requests.map((r) =>
            `${r.method} ${r.path} authorization=${r.headers.authorization ? "Basic (client id:secret)" : "none"}`
          );
          assertEquals(
            sent,
            [],
            `logout sent the GHE access token and client secret to the github preset's host:\n${logout.stderr}`,
          );
        });
      }, { clients: [CONFIDENTIAL_CLIENT] });
    });
  },
);

// ── PAR ──────────────────────────────────────────────────────────────────────────────────────

/** Over SSH with a forwarded browser: the browser flow with paste-back offered. */
const OVER_SSH = { SSH_CONNECTION: "10.0.0.1 50000 10.0.0.2 22", BROWSER: "firefox" };

Deno.test(
  "PAR required, paste-back: the address for the other machine is not the request_uri the start address hands out",
  async () => {
    await withMock(async (mock) => {
      const keys = keyboard();
      let start: string | undefined;
      let offered: string | undefined;
      let done: Promise<void> | undefined;
      const result = await run(flags(mock, "--timeout", "2"), {
        lines: keys.lines,
        env: OVER_SSH,
        openUrl: (url) => {
          start = url;
          return Promise.resolve();
        },
        onStderr: (text) => {
          const match = text.match(/open this address there instead:\n\n(\S+)\n/);
          if (!match || done) return;
          offered = match[1];
          done = (async () => {
            // The forwarded (local) browser opens the start address first, as the tool asked it to.
            await new Promise((resolve) => setTimeout(resolve, 20));
            const hop = await fetch(start!, { redirect: "manual" });
            await hop.body?.cancel();
            const local = await fetch(hop.headers.get("location")!, { redirect: "manual" });
            await local.body?.cancel();
            // The person, on the other machine, opens the address the terminal offered them.
            const there = await fetch(offered!, { redirect: "manual" });
            await there.body?.cancel();
            keys.end();
          })();
        },
      });
      await done;
      await cleanUp(result);
      assert(offered && start, "paste-back was offered");
      const offeredUri = new URL(offered).searchParams.get("request_uri");
      const hop = mock.calls("authorize").map((r) => r.query.request_uri);
      assertEquals(
        hop.filter((uri) => uri === offeredUri).length,
        1,
        `the same request_uri (${offeredUri}) was handed to both browsers (RFC 9126 §4: used once); ` +
          `the authorization endpoint saw: ${JSON.stringify(hop)}`,
      );
    }, { par: "required" });
  },
);

Deno.test("PAR: an absurd expires_in in the pushed answer is not shown as 'Infinity seconds'", async () => {
  await withMock(async (mock) => {
    reshapeAnswer(mock, "/par", (body) => ({ ...body, expires_in: 1e308 }), { status: 201 });
    const keys = keyboard();
    const result = await run(flags(mock, "--timeout", "1"), {
      lines: keys.lines,
      env: OVER_SSH,
      openUrl: () => Promise.resolve(),
      onStderr: (text) => {
        if (text.includes("Paste the address here")) keys.end();
      },
    });
    await cleanUp(result);
    assert(!/Infinity|NaN|e\+\d/.test(result.stderr), `the terminal shows a nonsense lifetime:\n${result.stderr}`);
  }, { par: "required" });
});

// ── Hostile server text on the terminal and the page ─────────────────────────────────────────

Deno.test(
  "server text: invisible and line-separating characters (U+2028, zero-width, BOM, tag characters) do not reach the terminal",
  async () => {
    await withMock(async (mock) => {
      const hidden = "Sign-in\u2028error: declined by\u200b your\u2060 admin\ufeff\u{E0041}\u{E0042}";
      const result = await run(flags(mock), {
        browser: async (start) => {
          const { state } = await authorizationUrl(start);
          const callback = new URL(start);
          callback.pathname = "/callback";
          callback.search = new URLSearchParams({
            error: "access_denied",
            error_description: hidden,
            state,
            iss: mock.issuer,
          }).toString();
          return { visited: [callback.href], ...await hit(callback) };
        },
      });
      await cleanUp(result);
      assertEquals(result.code, EXIT.denied, result.stderr);
      const invisible = result.stderr.match(/[\u2028\u2029\u200b-\u200d\u2060-\u2064\ufeff]|[\u{E0000}-\u{E007F}]/u);
      assert(
        !invisible,
        `U+${
          invisible?.[0].codePointAt(0)?.toString(16).toUpperCase()
        } from the server's error_description reached stderr: ` +
          JSON.stringify(result.stderr),
      );
    });
  },
);
