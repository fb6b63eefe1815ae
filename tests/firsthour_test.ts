/**
 * Issue 23, the first hour: every message names the real cause and its hint is a command that works
 * when followed (each case below runs the hint against the same mock and checks that it does not fail
 * the same way); every printed address keeps working while the tool waits; a login is four lines.
 *
 * @module
 */
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { EXIT } from "../login.ts";
import { CONFIDENTIAL_CLIENT, PUBLIC_CLIENT, type ServedMock } from "./mock_issuer.ts";
import {
  assertNoLeaks,
  cleanUp,
  fakeClock,
  reshapeAnswer,
  type Run,
  run,
  scriptedBrowser,
  withMock,
} from "./_harness.ts";

function flags(mock: ServedMock, ...extra: string[]): string[] {
  return ["--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id, ...extra];
}

/** The `hint:` line of a run (unwrapped: the runs here have no terminal width). */
function hintOf(result: Run): string {
  return result.stderr.match(/^hint: (.*)$/m)?.[1] ?? "";
}

// ── Messages that blame the wrong thing: invalid_client ─────────────────────────────────────────

const confidential = (mock: ServedMock, ...extra: string[]) => [
  "--issuer",
  mock.issuer,
  "--client-id",
  CONFIDENTIAL_CLIENT.id,
  ...extra,
];

for (const par of [true, false]) {
  const where = par ? "at PAR" : "at the code exchange";
  Deno.test(`invalid_client ${where}: the hint says what was sent and where it came from, and following it works`, async (t) => {
    await t.step("a wrong secret from the environment", async () => {
      await withMock(async (mock) => {
        const wrong = await run(confidential(mock), {
          env: { OAUTH_CLIENT_SECRET: "not-the-secret" },
          browser: scriptedBrowser,
        });
        assertEquals(wrong.code, par ? EXIT.usage : EXIT.failure, wrong.stderr);
        assertStringIncludes(wrong.stderr, '"invalid_client" (Client authentication failed)\n');
        assertEquals(
          hintOf(wrong),
          'the client secret from OAUTH_CLIENT_SECRET in the environment was sent (client_secret_basic): check that it is the current secret of the client "cli-confidential", and the client id; a client registered for client_secret_post needs --client-auth client_secret_post',
        );
        assert(!wrong.stderr.includes("redirect URI"), "the redirect URI is not what the server refused");
        assertNoLeaks(wrong, ["not-the-secret"]);
        // Following it: the client's current secret.
        const right = await run(confidential(mock), {
          env: { OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret! },
          browser: scriptedBrowser,
        });
        assertEquals(right.code, EXIT.ok, right.stderr);
        await cleanUp(wrong);
        await cleanUp(right);
      }, { par });
    });
    await t.step("a confidential client with no secret set", async () => {
      await withMock(async (mock) => {
        const none = await run(confidential(mock), { browser: scriptedBrowser });
        assertEquals(none.code, par ? EXIT.usage : EXIT.failure, none.stderr);
        assertEquals(
          hintOf(none),
          'check that the client id "cli-confidential" exists at the server; no client secret was sent (client authentication "none"), so if the client is confidential, set OAUTH_CLIENT_SECRET to its secret',
        );
        const followed = await run(confidential(mock), {
          env: { OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret! },
          browser: scriptedBrowser,
        });
        assertEquals(followed.code, EXIT.ok, followed.stderr);
        await cleanUp(none);
        await cleanUp(followed);
      }, { par });
    });
    await t.step("--client-auth none with a secret in the environment", async () => {
      await withMock(async (mock) => {
        const env = { OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret! };
        const dropped = await run(confidential(mock, "--client-auth", "none"), { env, browser: scriptedBrowser });
        assertEquals(dropped.code, par ? EXIT.usage : EXIT.failure, dropped.stderr);
        assertEquals(
          hintOf(dropped),
          'no client secret was sent: --client-auth says "none", so OAUTH_CLIENT_SECRET in the environment was left out; drop --client-auth none to send it',
        );
        const followed = await run(confidential(mock), { env, browser: scriptedBrowser });
        assertEquals(followed.code, EXIT.ok, followed.stderr);
        await cleanUp(dropped);
        await cleanUp(followed);
      }, { par });
    });
  });
}

// ── The browser wait: blame what is not known to be fine; stop when nobody can act ─────────────

/** A timer that never waits: each wait's clock runs out at once, so a 5-minute timeout takes no time. */
const instantTimer = () => Promise.resolve();

/** What `deno task login` says when the task's permissions do not allow running $BROWSER. */
const NOT_ALLOWED = 'Deno\'s permissions do not allow running "firefox": add --allow-run=firefox';

Deno.test("a browser that cannot be opened, with a person at the terminal: the wait goes on, and its timeout says why", async () => {
  await withMock(async (mock) => {
    const result = await run(flags(mock), { openFails: NOT_ALLOWED, interactive: true, timer: instantTimer });
    assertEquals(result.code, EXIT.timedOut, result.stderr);
    assertStringIncludes(
      result.stderr,
      `warning: Cannot open a browser (${NOT_ALLOWED}); open the address above yourself\n`,
    );
    assertEquals(
      hintOf(result),
      `no browser could be opened here (${NOT_ALLOWED}): run the login again ("oauth-login login --issuer ${mock.issuer} --client-id cli-public") and open the address it prints yourself, or use the device flow: "oauth-login login --flow device --issuer ${mock.issuer} --client-id cli-public"`,
    );
    // Following it: the device flow.
    const device = await run(flags(mock, "--flow", "device"), { ...fakeClock(), interactive: true });
    assertEquals(device.code, EXIT.ok, device.stderr);
    await cleanUp(result);
    await cleanUp(device);
  });
});

Deno.test("no browser and nobody at a terminal (a pipe, CI): said at once, exit 4, with a hint that works", async (t) => {
  await t.step("$BROWSER not allowed by the task's permissions; the server has the device flow", async () => {
    await withMock(async (mock) => {
      const result = await run(flags(mock), { openFails: NOT_ALLOWED });
      assertEquals(result.code, EXIT.loginRequired, result.stderr);
      assert(result.ms < 2_000, `no wait for nobody: ${result.ms} ms`);
      assertStringIncludes(
        result.stderr,
        `error: No browser can be opened here (${NOT_ALLOWED}), and no one at a terminal can open the address or paste one back\n`,
      );
      assertEquals(
        hintOf(result),
        `use the device flow, which needs no browser here: run "oauth-login login --flow device --issuer ${mock.issuer} --client-id cli-public" where its code can be read`,
      );
      assert(!result.stderr.includes('client id ("cli-public")'), "the client id is not blamed");
      const followed = await run(flags(mock, "--flow", "device"), fakeClock());
      assertEquals(followed.code, EXIT.ok, followed.stderr);
      await cleanUp(result);
      await cleanUp(followed);
    });
  });
  await t.step("no display, no device flow: before anything is pushed or opened", async () => {
    await withMock(async (mock) => {
      mock.metadata.device_authorization_endpoint = undefined;
      const result = await run(flags(mock), { env: { DISPLAY: "" } });
      assertEquals(result.code, EXIT.loginRequired, result.stderr);
      assertStringIncludes(
        result.stderr,
        "error: No browser can be opened here (there is no display (DISPLAY and WAYLAND_DISPLAY are unset)), and no one at a terminal can open the address or paste one back\n",
      );
      assertEquals(
        hintOf(result),
        `run "oauth-login login --issuer ${mock.issuer} --client-id cli-public" in a terminal, where you can open the address it prints or paste back the one the browser ends on`,
      );
      assertEquals(mock.calls("par").length + mock.preflights().length, 0);
      // Following it: in a terminal, the person pastes back the address the browser ended on.
      let printed: (address: string) => void;
      const address = new Promise<string>((resolve) => printed = resolve);
      const followed = await run(flags(mock), {
        env: { DISPLAY: "" },
        onStderr: (text) => {
          const found = text.match(/\n {2}(http:\/\/\S+\/authorize\?\S+)\n/)?.[1];
          if (found) printed(found);
        },
        lines: (async function* () {
          const response = await fetch(await address, { redirect: "manual" });
          await response.body?.cancel();
          yield response.headers.get("location")!;
        })(),
      });
      assertEquals(followed.code, EXIT.ok, followed.stderr);
      await cleanUp(result);
      await cleanUp(followed);
    });
  });
});

// ── Scopes with commas, and DPoP where the server has none ──────────────────────────────────────

Deno.test("a scope written with commas is refused before the browser opens; following the hint signs in", async (t) => {
  await t.step("--scope", async () => {
    await withMock(async (mock) => {
      const result = await run(flags(mock, "--scope", "openid,profile"), { browser: scriptedBrowser });
      assertEquals(result.code, EXIT.usage, result.stderr);
      assertStringIncludes(
        result.stderr,
        'error: The scope "openid,profile" is written with commas, but scopes are separated by spaces\nhint: write it as --scope "openid profile"\n',
      );
      assertEquals(result.opened, [], "no browser");
      assertEquals(mock.calls("par").length + mock.preflights().length, 0, "nothing sent");
      const followed = await run(flags(mock, "--scope", "openid profile"), { browser: scriptedBrowser });
      assertEquals(followed.code, EXIT.ok, followed.stderr);
      await cleanUp(result);
      await cleanUp(followed);
    }, { par: true });
  });
  await t.step("OAUTH_SCOPE in the environment", async () => {
    await withMock(async (mock) => {
      const result = await run(flags(mock), { env: { OAUTH_SCOPE: "openid, email" } });
      assertEquals(result.code, EXIT.usage, result.stderr);
      assertEquals(hintOf(result), 'write OAUTH_SCOPE in the environment with spaces: "openid email"');
      await cleanUp(result);
    });
  });
  await t.step("a comma the server lists as part of a scope, and endpoints given by hand, pass", async () => {
    await withMock(async (mock) => {
      mock.metadata.scopes_supported = ["openid", "read,write"];
      const listed = await run(flags(mock, "--scope", "openid read,write"), { browser: scriptedBrowser });
      assertEquals(listed.code, EXIT.ok, listed.stderr);
      const byHand = await run([
        "--authorization-endpoint",
        `${mock.issuer}/authorize`,
        "--token-endpoint",
        `${mock.issuer}/token`,
        "--client-id",
        PUBLIC_CLIENT.id,
        "--scope",
        "read,activity:read",
      ], { browser: scriptedBrowser });
      assertEquals(byHand.code, EXIT.ok, byHand.stderr);
      assertEquals(mock.calls("token").at(-1)?.form.grant_type, "authorization_code");
      await cleanUp(listed);
      await cleanUp(byHand);
    });
  });
});

Deno.test("login --dpop at a server that lists no DPoP algorithms: refused before the browser, and the hint works", async (t) => {
  for (
    const [how, args, env, hint] of [
      ["--dpop", ["--dpop"], {}, "sign in without DPoP: leave out --dpop"],
      ["OAUTH_DPOP=1", [], { OAUTH_DPOP: "1" }, "sign in without DPoP: unset OAUTH_DPOP"],
    ] as const
  ) {
    await t.step(how, async () => {
      await withMock(async (mock) => {
        const result = await run(flags(mock, ...args), { env, browser: scriptedBrowser });
        assertEquals(result.code, EXIT.usage, result.stderr);
        assertStringIncludes(
          result.stderr,
          `error: The server at 127.0.0.1:${mock.port} does not offer DPoP: its metadata lists no dpop_signing_alg_values_supported\n`,
        );
        assertEquals(hintOf(result), hint);
        assertEquals(result.opened, []);
        const followed = await run(flags(mock), { browser: scriptedBrowser });
        assertEquals(followed.code, EXIT.ok, followed.stderr);
        await cleanUp(result);
        await cleanUp(followed);
      });
    });
  }
});

Deno.test("token --dpop after a plain login: the login it suggests keeps --dpop, and following it gives a DPoP token", async () => {
  await withMock(async (mock) => {
    mock.metadata.dpop_signing_alg_values_supported = ["ES256"];
    const plain = await run(flags(mock), { browser: scriptedBrowser });
    assertEquals(plain.code, EXIT.ok, plain.stderr);
    const refused = await run(["token", ...flags(mock, "--dpop")], { home: plain.home });
    assertEquals(refused.code, EXIT.loginRequired, refused.stderr);
    const suggested = hintOf(refused).match(/^run "oauth-login (login [^"]+)"/)?.[1];
    assertEquals(suggested, `login --issuer ${mock.issuer} --client-id cli-public --dpop`);
    const followed = await run(suggested!.split(" "), { home: plain.home, browser: scriptedBrowser });
    assertEquals(followed.code, EXIT.ok, followed.stderr);
    const again = await run(["token", ...flags(mock, "--dpop")], { home: plain.home });
    assertEquals(again.code, EXIT.ok, again.stderr);
    await cleanUp(plain);
  });
});

// ── Addresses that keep working ─────────────────────────────────────────────────────────────────

/** Follows one redirect by hand: the `Location` a GET of `url` answers with. */
async function locationOf(url: string): Promise<string> {
  const response = await fetch(url, { redirect: "manual" });
  await response.body?.cancel();
  assertEquals(response.status, 302, `GET ${url} redirects`);
  return response.headers.get("location")!;
}

Deno.test("the start address works on every visit: a pushed request that was handed out is pushed again (same state and PKCE)", async () => {
  await withMock(async (mock) => {
    const result = await run(flags(mock), {
      browser: async (start) => {
        // The first visit: the browser reaches the server (which uses up its request_uri), then the tab is closed.
        const first = await locationOf(start);
        await locationOf(first);
        // The person opens the printed address again.
        const second = await locationOf(start);
        assert(second !== first, "a fresh request_uri");
        return await scriptedBrowser(second);
      },
    });
    assertEquals(result.code, EXIT.ok, result.stderr);
    const [one, two] = mock.calls("par");
    assertEquals(mock.calls("par").length, 2);
    for (const field of ["state", "code_challenge", "nonce", "redirect_uri"]) {
      assertEquals(two.form[field], one.form[field], `the same ${field}`);
    }
    await cleanUp(result);
  }, { par: true });
});

Deno.test("the start address works two minutes into the wait: an expired request_uri is pushed again first", async () => {
  const clock = fakeClock();
  await withMock(async (mock) => {
    const result = await run(flags(mock), {
      now: clock.now,
      browser: async (start) => {
        clock.advance(120_000); // the person opens the printed address two minutes later
        return await scriptedBrowser(start);
      },
    });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(mock.calls("par").length, 2, "the first request_uri had expired: a fresh one");
    assertEquals(result.visit?.status, 200);
    await cleanUp(result);
  }, { par: true, now: clock.now });
});

Deno.test("paste-back where the server requires PAR: the address for another machine says it expires, and Enter makes a new one", async () => {
  const clock = fakeClock();
  await withMock(async (mock) => {
    const offers: string[] = [];
    let wake: (() => void) | undefined;
    const result = await run(flags(mock), {
      now: clock.now,
      env: { SSH_CONNECTION: "10.0.0.1 50000 10.0.0.2 22", BROWSER: "firefox" },
      openUrl: () => Promise.resolve(),
      onStderr: (text) => {
        for (const match of text.matchAll(/\n\n(http:\/\/\S+\/authorize\?\S+)\n/g)) offers.push(match[1]);
        wake?.();
      },
      lines: (async function* () {
        while (offers.length < 1) await new Promise<void>((resolve) => wake = resolve);
        clock.advance(120_000); // two minutes later, at the other machine: the first address has expired
        yield ""; // Enter: a new address
        while (offers.length < 2) await new Promise<void>((resolve) => wake = resolve);
        yield await locationOf(offers[1]);
      })(),
    });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertStringIncludes(
      result.stderr,
      "paste its address here and press Enter. It can be used once, for about 55 seconds: press Enter here for a new one.\n",
    );
    assertStringIncludes(result.stderr, "A new address for the other machine:\n\n");
    assertEquals(offers.length, 2);
    assert(offers[0] !== offers[1]);
    await cleanUp(result);
  }, { par: "required", now: clock.now });
});

// ── The issuer as people paste it ───────────────────────────────────────────────────────────────

Deno.test("the address the browser ended on, given as --issuer: said so, its code never shown, and the iss it carries is the hint", async (t) => {
  await t.step("with iss", async () => {
    await withMock(async (mock) => {
      const pasted = `http://127.0.0.1:53219/callback?code=SplxlOBeZQQYbYS6WxSbIA&state=af0ifjsldkj&iss=${
        encodeURIComponent(mock.issuer)
      }`;
      const result = await run(["--issuer", pasted, "--client-id", PUBLIC_CLIENT.id]);
      assertEquals(result.code, EXIT.usage, result.stderr);
      assertEquals(
        result.stderr,
        'error: The issuer "http://127.0.0.1:53219/callback?…" is the address a browser ends on after signing in, not an issuer\n' +
          `hint: the server named itself in that address (iss): use --issuer ${mock.issuer}\n`,
      );
      assertNoLeaks(result, ["SplxlOBeZQQYbYS6WxSbIA"]);
      const followed = await run(["--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id], {
        browser: scriptedBrowser,
      });
      assertEquals(followed.code, EXIT.ok, followed.stderr);
      await cleanUp(result);
      await cleanUp(followed);
    });
  });
  await t.step("without iss", async () => {
    const result = await run(["--issuer", "http://127.0.0.1:53219/callback?code=SplxlOBeZQQYbYS6WxSbIA&state=x"]);
    assertEquals(result.code, EXIT.usage, result.stderr);
    assertEquals(
      hintOf(result),
      "the issuer is the authorization server's URL, e.g. https://example.okta.com/oauth2/default; the address the browser ends on is pasted into the terminal while a login waits",
    );
    assertNoLeaks(result, ["SplxlOBeZQQYbYS6WxSbIA"]);
    await cleanUp(result);
  });
});

Deno.test("https:// for a plain-http issuer on this machine: the hint is http://, and following it works", async () => {
  await withMock(async (mock) => {
    const https = mock.issuer.replace(/^http:/, "https:");
    const result = await run(["--issuer", https, "--client-id", PUBLIC_CLIENT.id]);
    assertEquals(result.code, EXIT.failure, result.stderr);
    assertStringIncludes(result.stderr, `error: Cannot reach 127.0.0.1:${mock.port}: TLS failed`);
    assertEquals(
      hintOf(result),
      `the server at 127.0.0.1:${mock.port} answered, but not with TLS: a development server on this machine usually speaks plain http, so use --issuer ${mock.issuer}`,
    );
    assert(!result.stderr.includes("DENO_CERT"), "not about CAs");
    const followed = await run(["--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id], {
      browser: scriptedBrowser,
    });
    assertEquals(followed.code, EXIT.ok, followed.stderr);
    await cleanUp(result);
    await cleanUp(followed);
  });
});

Deno.test("flags that name another server leave the default profile out, and --verbose says so", async () => {
  await withMock(async (mock) => {
    const home = await Deno.makeTempDir({ prefix: "oauth-login-firsthour-" });
    await Deno.mkdir(`${home}/config/oauth-login`, { recursive: true });
    await Deno.writeTextFile(
      `${home}/config/oauth-login/config.toml`,
      'default_profile = "work"\n\n[work]\nissuer = "https://idp.invalid/oauth2/default"\nclient_id = "0oa-work"\n',
    );
    const byHand = [
      "--authorization-endpoint",
      `${mock.issuer}/authorize`,
      "--token-endpoint",
      `${mock.issuer}/token`,
      "--client-id",
      PUBLIC_CLIENT.id,
    ];
    const result = await run([...byHand, "--verbose"], { home, browser: scriptedBrowser });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertStringIncludes(
      result.stderr,
      `trace: the default profile "work" of ${home}/config/oauth-login/config.toml is not used: --authorization-endpoint names the server\n`,
    );
    assert(!result.stderr.includes("idp.invalid"), "the profile's issuer was not used");
    const quiet = await run(byHand, { home, browser: scriptedBrowser });
    assertEquals(quiet.code, EXIT.ok, quiet.stderr);
    assert(!quiet.stderr.includes("default profile"), "said only under --verbose");
    await cleanUp(result);
  });
});

// ── A login is four lines ───────────────────────────────────────────────────────────────────────

/**
 * What a terminal `columns` wide shows after `output`: its rows, with carriage returns, "erase line"
 * (ESC [2K), cursor up (ESC [1A), save and restore (ESC 7, ESC 8) and wrapping applied.
 */
function screen(output: string, columns = 80): string[] {
  const rows: string[] = [""];
  let row = 0;
  let col = 0;
  let saved = [0, 0];
  for (let i = 0; i < output.length; i++) {
    const rest = output.slice(i);
    // deno-lint-ignore no-control-regex
    const escape = rest.match(/^\x1b(\[2K|\[1A|7|8)/);
    if (escape) {
      if (escape[1] === "[2K") rows[row] = "";
      else if (escape[1] === "[1A") row = Math.max(0, row - 1);
      else if (escape[1] === "7") saved = [row, col];
      else [row, col] = saved;
      i += escape[0].length - 1;
      continue;
    }
    const char = output[i];
    if (char === "\r") col = 0;
    else if (char === "\n" || col === columns) {
      row++;
      col = 0;
      rows[row] ??= "";
      if (char !== "\n") i--;
    } else {
      rows[row] = rows[row].padEnd(col).slice(0, col) + char + rows[row].slice(col + 1);
      col++;
    }
  }
  return rows.filter((line, index) => line !== "" || index < row);
}

Deno.test("a login in a terminal at 80 columns is at most four lines: where, the address, the countdown, who", async () => {
  await withMock(async (mock) => {
    let peak = 0;
    let output = "";
    const result = await run(flags(mock), {
      animate: true,
      interactive: true,
      lines: (async function* () {})(),
      columns: 80,
      timer: (_ms, signal) => new Promise((resolve) => signal.addEventListener("abort", () => resolve())),
      onStderr: (text) => {
        output += text;
        peak = Math.max(peak, screen(output).length);
      },
      browser: scriptedBrowser,
    });
    assertEquals(result.code, EXIT.ok, result.stderr);
    const shown = screen(result.stderr);
    assertEquals(shown.length, 3, shown.join("\n"));
    assert(peak <= 4, `at most four lines at any moment: ${peak}`);
    assertEquals(shown[0], `Opening your browser to sign in at 127.0.0.1:${mock.port} ...`);
    assertEquals(shown[1], result.opened[0] && `If it does not open, visit: ${result.opened[0]}`);
    assertEquals(shown[2], "Logged in as alice@example.com");
    await cleanUp(result);
  }, { par: true });
});

Deno.test("the address for another machine shows only where it helps: an SSH session, --verbose, or no browser here", async (t) => {
  const offered = (result: Run) => result.stderr.includes("If that browser runs on another machine");
  for (
    const [name, env, extra, expected] of [
      ["a desktop", {}, [], false],
      ["an SSH session with a browser", { SSH_CONNECTION: "10.0.0.1 50000 10.0.0.2 22", BROWSER: "firefox" }, [], true],
      ["--verbose", {}, ["--verbose"], true],
    ] as const
  ) {
    await t.step(name, async () => {
      await withMock(async (mock) => {
        const result = await run(flags(mock, ...extra), {
          env,
          interactive: true,
          lines: (async function* () {})(),
          browser: scriptedBrowser,
        });
        assertEquals(result.code, EXIT.ok, result.stderr);
        assertEquals(offered(result), expected, result.stderr);
        await cleanUp(result);
      });
    });
  }
});

// ── A QR code for the device flow ───────────────────────────────────────────────────────────────

/**
 * The QR code in a terminal's text (half blocks: "█" both modules light, "▀" the upper, "▄" the lower,
 * " " neither), read back with the decoder of the same npm package: the text it carries.
 */
async function readQr(stderr: string): Promise<string> {
  const lines = stderr.split("\n").filter((line) => /^ {2}█{10,}/.test(line) || /^ {2}[█▀▄ ]{10,}/.test(line));
  const width = lines[0].match(/^ {2}(█+)/)![1].length;
  const rows = lines.map((line) => [...line.slice(2)].slice(0, width));
  const modules: boolean[][] = []; // true: light
  for (const row of rows) {
    modules.push(row.map((c) => c === "█" || c === "▀"));
    modules.push(row.map((c) => c === "█" || c === "▄"));
  }
  const scale = 4;
  const margin = 4; // more light around it, as a screen would show
  const size = { width: (width + 2 * margin) * scale, height: (modules.length + 2 * margin) * scale };
  const data = new Uint8Array(size.width * size.height * 4).fill(255);
  for (let y = 0; y < modules.length; y++) {
    for (let x = 0; x < width; x++) {
      if (modules[y][x]) continue;
      for (let dy = 0; dy < scale; dy++) {
        for (let dx = 0; dx < scale; dx++) {
          const offset = (((y + margin) * scale + dy) * size.width + (x + margin) * scale + dx) * 4;
          data.fill(0, offset, offset + 3);
        }
      }
    }
  }
  const { default: decodeQR } = await import("npm:qr@0.7.0/decode.js");
  return decodeQR({ ...size, data });
}

Deno.test("the device flow on a terminal shows a QR code of verification_uri_complete beside the code; it decodes to that address", async () => {
  await withMock(async (mock) => {
    const result = await run(flags(mock, "--flow", "device"), { ...fakeClock(), stderrIsTerminal: true, columns: 80 });
    assertEquals(result.code, EXIT.ok, result.stderr);
    const [device] = mock.calls("device_authorization");
    assert(device, "a device authorization request");
    const code = [...mock.deviceCodes.values()][0]?.userCode ??
      result.stderr.match(/and enter the code:\n\n {2}(\S+)\n/)![1];
    assertEquals(await readQr(result.stderr), `${mock.issuer}/device?user_code=${code}`);
    assertStringIncludes(result.stderr, `the code ${code} filled in.\n`);
    for (const line of result.stderr.split("\n")) assert([...line].length <= 80, `fits 80 columns: ${line}`);
    await cleanUp(result);
  });
});

Deno.test("no QR code when stderr is not a terminal, or with --quiet", async () => {
  await withMock(async (mock) => {
    for (const [options, extra] of [[{}, []], [{ stderrIsTerminal: true }, ["--quiet"]]] as const) {
      const result = await run(flags(mock, "--flow", "device", ...extra), { ...fakeClock(), ...options });
      assertEquals(result.code, EXIT.ok, result.stderr);
      assert(!result.stderr.includes("▀"), result.stderr);
      await cleanUp(result);
    }
  });
});

// ── Output that fits: doctor, whoami --all, warnings, .env lines ────────────────────────────────

/** Lines wider than `width` that hold a space: a terminal breaks those mid-word. (A lone long URL cannot be helped.) */
function brokenLines(text: string, width = 80): string[] {
  return text.split("\n").filter((line) => [...line].length > width && line.trim().includes(" "));
}

Deno.test("doctor at 80 columns breaks no line mid-word: the message column wraps under itself", async () => {
  await withMock(async (mock) => {
    const result = await run(["doctor", ...flags(mock)], { stdoutIsTerminal: true, columns: 80 });
    assertEquals(result.code, EXIT.ok, result.stdout);
    assertEquals(brokenLines(result.stdout), []);
    assertStringIncludes(result.stdout, "\nok    discovery  ");
    assert(/\n {17}\S/.test(result.stdout), "continuation lines start under the message column");
    const piped = await run(["doctor", ...flags(mock)]);
    assert(brokenLines(piped.stdout).length > 0, "a pipe gets one line per check, for grep");
    await cleanUp(result);
    await cleanUp(piped);
  }, { par: true });
});

Deno.test("whoami --all fits 80 columns: one block per login where the table would not", async () => {
  await withMock(async (mock) => {
    const login = await run(flags(mock), { browser: scriptedBrowser });
    assertEquals(login.code, EXIT.ok, login.stderr);
    const all = await run(["whoami", "--all"], { home: login.home, stdoutIsTerminal: true, columns: 80 });
    assertEquals(all.code, EXIT.ok, all.stderr);
    assertEquals(brokenLines(all.stdout), []);
    assertStringIncludes(
      all.stdout,
      `${mock.issuer}\n  client:  cli-public\n  user:    alice@example.com\n  token:   `,
    );
    const wide = await run(["whoami", "--all"], { home: login.home, stdoutIsTerminal: true, columns: 200 });
    assert(wide.stdout.startsWith("PROFILE  ISSUER"), "the table where it fits");
    await cleanUp(login);
  });
});

Deno.test("a .env line KEY: value and a value cut at # are reported with their line, never the value", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/.env`,
      "# settings\nOAUTH_ISSUER: https://idp.example\nOAUTH_CLIENT_SECRET=abc#123secret\nOAUTH_SCOPE=openid # the default\nOAUTH_CLIENT_ID='x#y'\n",
    );
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../login.ts", import.meta.url).pathname, "whoami"],
      cwd: dir,
      clearEnv: true,
      env: { OAUTH_LOGIN_CACHE: `${dir}/cache`, NO_COLOR: "1", HOME: dir, ...denoCache() },
      stdin: "null",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr).replace(/\n {2,}/g, " "); // wrapped at 80 in a pipe too
    assertStringIncludes(
      stderr,
      'warning: Line 2 of the .env is not read: "OAUTH_ISSUER" is followed by ":", and dotenv wants "="\n',
    );
    assertStringIncludes(
      stderr,
      'warning: Line 3 of the .env cuts the value of "OAUTH_CLIENT_SECRET" at "#" (the rest reads as a comment):',
    );
    assert(!stderr.includes("Line 4") && !stderr.includes("Line 5"), "a comment after a space, and quotes, are fine");
    assert(!stderr.includes("123secret") && !stderr.includes("abc"), "no value shown");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("warnings are wrapped to the terminal like every other line", async () => {
  await withMock(async (mock) => {
    const result = await run(["whoami", ...flags(mock)], { columns: 60, files: { ".env": { OAUTH_CLIENTID: "x" } } });
    assertStringIncludes(
      result.stderr,
      'warning: The .env key "OAUTH_CLIENTID" is not one this tool\n         reads; did you mean OAUTH_CLIENT_ID?\n',
    );
    await cleanUp(result);
  });
});

// ── Installing it ───────────────────────────────────────────────────────────────────────────────

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** The variables that point Deno at its cache (so that a child finds the npm packages this run has). */
function denoCache(): Record<string, string> {
  const dir = Deno.env.get("DENO_DIR");
  return dir
    ? { DENO_DIR: dir }
    : { XDG_CACHE_HOME: Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME")}/.cache` };
}

/** Runs a command in the repository with `PATH` given; its exit code and output. */
async function sh(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(args[0], {
    args: args.slice(1),
    cwd: ROOT,
    // Not this process's environment: under `deno task test` it has INIT_CWD, and the hints would say `deno task`.
    clearEnv: true,
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", ...denoCache(), ...env },
    stdin: "null",
  }).output();
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes).replace(/\n {2,}/g, " ");
  return { code: output.code, stdout: text(output.stdout), stderr: text(output.stderr) };
}

Deno.test({
  name: "the README's install, update and uninstall lines work, and the installed command's hints say oauth-login",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "oauth-login-install-" });
    const deno = Deno.execPath().replace(/\/[^/]+$/, "");
    const env = { PATH: `${root}/bin:${deno}:/usr/bin:/bin`, HOME: root, OAUTH_LOGIN_CACHE: `${root}/cache` };
    const whoami = ["whoami", "--issuer", "https://idp.example", "--client-id", "abc"];
    try {
      // As the README has them, with --root so that the test's install stays in its folder.
      const install = await sh([
        Deno.execPath(),
        "install",
        "-g",
        "-A",
        "-n",
        "oauth-login",
        "--root",
        root,
        "login.ts",
      ], env);
      assertEquals(install.code, 0, install.stderr);
      const installed = await sh(["oauth-login", ...whoami], env);
      assertEquals(installed.code, EXIT.loginRequired, installed.stderr);
      assertStringIncludes(
        installed.stderr,
        'hint: run "oauth-login login --issuer https://idp.example --client-id abc"\n',
      );
      // The module run by hand names itself as it can be typed where the person stands.
      const byHand = await sh([Deno.execPath(), "run", "-A", "login.ts", ...whoami], {
        ...env,
        PATH: `${deno}:/usr/bin:/bin`,
      });
      assertStringIncludes(byHand.stderr, 'hint: run "deno run -A login.ts login --issuer https://idp.example');
      const update = await sh([
        Deno.execPath(),
        "install",
        "-g",
        "-A",
        "-f",
        "-n",
        "oauth-login",
        "--root",
        root,
        "login.ts",
      ], env);
      assertEquals(update.code, 0, update.stderr);
      assertEquals((await sh(["oauth-login", "--version"], env)).stdout, "oauth-login 0.1.0\n");
      const uninstall = await sh([Deno.execPath(), "uninstall", "-g", "--root", root, "oauth-login"], env);
      assertEquals(uninstall.code, 0, uninstall.stderr);
      assertEquals(
        await Array.fromAsync(Deno.readDir(`${root}/bin`)).then((entries) => entries.map((e) => e.name)),
        [],
      );
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("every oauth-login command in the README and docs parses as written, and every deno task they name exists", async () => {
  const { parseCli } = (await import("../login.ts")).testing;
  // The README, and the documents its summaries point to for the provider recipes and the rules in full.
  const readme = (await Promise.all(
    ["README.md", "docs/providers.md", "docs/reference.md"].map((file) => Deno.readTextFile(`${ROOT}/${file}`)),
  )).join("\n").replaceAll("\\\n", " ");
  const commands: string[] = [];
  for (const match of readme.matchAll(/(?<![\w/.#-]|-n |-g )oauth-login((?: [^`\n|)#]*)?)/g)) {
    const line = readme.slice(readme.lastIndexOf("\n", match.index) + 1, match.index);
    if (line.includes("#") && /(^|\s)#\s/.test(line)) continue; // a shell comment
    commands.push(match[1].replace(/["\s]+$/, "").trim());
  }
  assert(commands.length > 20, `found ${commands.length}`);
  const words = (text: string) => [...text.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]);
  for (const command of commands) {
    const args = words(command).map((word) => word === "COMMAND" ? "login" : word);
    try {
      await parseCli(args);
    } catch (error) {
      throw new Error(`the README's "oauth-login ${command}" does not parse: ${(error as Error).message}`);
    }
  }
  const tasks = Object.keys(JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`)).tasks);
  for (const [, name] of readme.matchAll(/deno task (?:-q )?([a-z-]+)/g)) {
    assert(tasks.includes(name), `the README names "deno task ${name}", which deno.json does not have`);
  }
});

Deno.test("a verification address too long for a scannable code on the terminal gets no QR code, and the flow goes on", async () => {
  await withMock(async (mock) => {
    reshapeAnswer(mock, "/device_authorization", (body) => ({
      ...body,
      verification_uri_complete: `${body.verification_uri_complete}&pad=${"x".repeat(1200)}`,
    }));
    const result = await run(flags(mock, "--flow", "device"), { ...fakeClock(), stderrIsTerminal: true, columns: 80 });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assert(!result.stderr.includes("▀"), "no QR code wider than the terminal");
    await cleanUp(result);
  });
});

Deno.test("paste-back where the whole request is in the address: Enter alone changes nothing", async () => {
  await withMock(async (mock) => {
    let offered: (address: string) => void;
    const address = new Promise<string>((resolve) => offered = resolve);
    const result = await run(flags(mock), {
      env: { SSH_CONNECTION: "10.0.0.1 50000 10.0.0.2 22", BROWSER: "firefox" },
      openUrl: () => Promise.resolve(),
      onStderr: (text) => {
        const found = text.match(/\n\n(http:\/\/\S+\/authorize\?\S+)\n/)?.[1];
        if (found) offered(found);
      },
      lines: (async function* () {
        const at = await address;
        yield "";
        yield await locationOf(at);
      })(),
    });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assert(!result.stderr.includes("new address") && !result.stderr.includes("press Enter here"), result.stderr);
    await cleanUp(result);
  }); // no PAR: the address for another machine and the loopback's are the same request
});
