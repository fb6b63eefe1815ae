/**
 * Red-team reproductions against the issue-19 main (branch `redteam`). Each test states the promise it
 * checks (README or SECURITY.md) and FAILS while the problem is there: it asserts what should happen.
 *
 *     deno test -A tests/redteam_test.ts
 *
 * @module
 */
import { EXIT, testing } from "../login.ts";
import {
  type MockClient,
  type MockIssuer,
  type MockUser,
  type ServedMock,
  serveMockIssuer,
} from "./mock_issuer.ts";
import { cleanUp, run, scriptedBrowser, withMock } from "./_harness.ts";
import { assert, assertEquals } from "./assert.ts";

const REPO = "/home/alice/repo";

/** Makes `evil` pass every request on to `real` and hand back its answer: a relaying attacker. */
function relayTo(real: ServedMock): MockIssuer["intercept"] {
  return async (record, url) => {
    const headers = new Headers(record.headers);
    headers.delete("host");
    headers.delete("content-length");
    const body = record.method === "POST" ? new URLSearchParams(record.form) : undefined;
    const target = `${new URL(real.issuer).origin}${url.pathname}${url.search}`;
    return await real.handler(new Request(target, { method: record.method, headers, body }));
  };
}

// ── 1. A .env that names the github preset and its own token endpoint ───────────────────────────

const OCTOCAT: MockUser = { sub: "u-1", username: "octocat", email: "octocat@example.com", name: "Octocat" };

/** A GitHub stand-in (no discovery, GitHub's paths and dialect), as tests/providers_test.ts has it. */
function github(client: MockClient): ServedMock {
  return serveMockIssuer({
    user: OCTOCAT,
    clients: [client],
    discovery: "none",
    issParameter: false,
    paths: {
      authorize: "/login/oauth/authorize",
      token: "/login/oauth/access_token",
      device_authorization: "/login/device/code",
      device: "/login/device",
    },
    dialect: { status200Errors: true, scopeSeparator: ",", tokenType: "bearer", omitExpiresIn: true },
    whoAmI: { path: "/user", body: () => ({ login: "octocat", id: 1 }) },
  });
}

Deno.test(
  "README 'keeps its endpoints on its issuer's host' / issue 19 §1: a .env naming the github preset cannot send the code to its own token endpoint",
  async () => {
    // A well-known public OAuth app (as GitHub CLI's is): the person may have approved it before.
    const client: MockClient = { id: "well-known-cli-app", auth: "none", redirectUris: ["http://127.0.0.1/callback"] };
    const real = github(client);
    try {
      await withMock(async (evil) => {
        evil.intercept = relayTo(real);
        const result = await run(["login"], {
          cwd: REPO,
          files: {
            ".env": {
              OAUTH_PROVIDER: "github",
              OAUTH_CLIENT_ID: client.id,
              OAUTH_SCOPE: "repo",
              OAUTH_TOKEN_ENDPOINT: `${evil.issuer}/login/oauth/access_token`,
            },
          },
          presetBase: new URL(real.issuer).origin, // github.com is the real (loopback) GitHub here
          browser: (url) => scriptedBrowser(url),
        });
        try {
          const stolen = evil.requests.filter((r) => r.form.code !== undefined);
          // The browser signed in at the real GitHub; the code and its PKCE verifier must not reach the project's server.
          assertEquals(
            stolen.map((r) => Object.keys(r.form).sort()),
            [],
            `the project's server received: ${JSON.stringify(stolen.map((r) => r.form))}\n${result.stderr}`,
          );
          assertEquals(result.code, EXIT.usage, result.stderr);
        } finally {
          await cleanUp(result);
        }
      });
    } finally {
      await real.close();
    }
  },
);

Deno.test(
  "README 'keeps its endpoints on its issuer's host': over SSH (device flow), a .env naming the github preset cannot take the device code",
  async () => {
    const client: MockClient = { id: "well-known-cli-app", auth: "none", redirectUris: ["http://127.0.0.1/callback"] };
    const real = github(client);
    try {
      await withMock(async (evil) => {
        evil.intercept = relayTo(real);
        const result = await run(["login"], {
          cwd: REPO,
          env: { DISPLAY: "", SSH_CONNECTION: "10.0.0.2 5555 10.0.0.1 22" }, // --flow auto picks the device flow
          files: {
            ".env": {
              OAUTH_PROVIDER: "github",
              OAUTH_CLIENT_ID: client.id,
              OAUTH_TOKEN_ENDPOINT: `${evil.issuer}/login/oauth/access_token`,
            },
          },
          presetBase: new URL(real.issuer).origin,
          sleep: () => Promise.resolve(),
        });
        try {
          const stolen = evil.requests.filter((r) => r.form.device_code !== undefined);
          assertEquals(
            stolen.length,
            0,
            `the project's server received the device code: ${JSON.stringify(stolen[0]?.form)}\n${result.stderr}`,
          );
          assertEquals(result.code, EXIT.usage, result.stderr);
        } finally {
          await cleanUp(result);
        }
      });
    } finally {
      await real.close();
    }
  },
);
