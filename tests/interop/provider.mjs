// A real, OpenID-certified authorization server (oidc-provider 8) for oauth-login's interop tests.
//
//   node tests/interop/provider.mjs [--confidential-redirect URL] [--access-token-ttl SECONDS]
//                                   [--device-interval SECONDS] [--clock] [--dpop] [--resources]
//                                   [--registration] [--api RESOURCE]
//
// With --clock, `POST /__clock` with a body of N moves the provider's clock (Date.now, which all of
// oidc-provider's lifetimes read) N seconds ahead of the real one (0 puts it back): a test can make
// two minutes pass for a pushed request's 60-second lifetime without sleeping.
//
// Listens on 127.0.0.1 on a port the OS picks, prints one JSON line on stdout once it is listening:
//   {"issuer":"http://127.0.0.1:PORT","port":PORT,"clients":{...},"account":{...}}
// and exits when its stdin closes, on SIGTERM or on SIGINT. Development only: plain http on
// loopback, the built-in sign-in and consent pages (devInteractions), an in-memory store.
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { parseArgs } from "node:util";

// Loaded dynamically so that `deno check` (which sees this Node script) does not need the package.
const { default: Provider, errors } = await import("oidc-provider");

const { values: args } = parseArgs({
  options: {
    "confidential-redirect": {
      type: "string",
      default: "http://127.0.0.1:8976/cb",
    },
    "access-token-ttl": { type: "string", default: "3600" },
    "device-interval": { type: "string", default: "1" },
    // DPoP (RFC 9449) with server nonces required at every endpoint, and the resource servers of
    // RFC 8707 (https://api-one.example/ and https://api-two.example/, JWT access tokens).
    dpop: { type: "boolean", default: false },
    clock: { type: "boolean", default: false },
    resources: { type: "boolean", default: false },
    // Open dynamic client registration (RFC 7591), as servers that API metadata names often have.
    registration: { type: "boolean", default: false },
    // The resource identifier of the tests' own API (RFC 8707 / RFC 9728): its tokens are JWTs for it,
    // with the scopes mcp:read and mcp:admin and the sign-in's auth_time (for RFC 9470 step-up).
    api: { type: "string" },
    // Logins without a person: client credentials, and token exchange (RFC 8693) and JWT bearer
    // (RFC 7523) through registerGrantType, each checking the subject token against a CI's JWKS.
    machine: { type: "boolean", default: false },
  },
  strict: true,
});
function seconds(flag) {
  const value = Number(args[flag]);
  if (!Number.isInteger(value) || value < 1) {
    console.error(
      `provider: --${flag} must be a positive whole number of seconds`,
    );
    process.exit(2);
  }
  return value;
}
const accessTokenTtl = seconds("access-token-ttl");
const deviceInterval = seconds("device-interval");

/** The clients the tests use. The public one may use any loopback port (RFC 8252 §7.3). */
export const CLIENTS = {
  public: { id: "interop-public" },
  confidential: {
    id: "interop-confidential",
    secret: "interop-confidential-secret-0123456789",
  },
};

/**
 * The one person who signs in. devInteractions accepts any login name and makes it the account id
 * (the `sub`); every account gets these profile claims, so the tests type `sub` as the login name.
 */
export const ACCOUNT = {
  sub: "248289761001",
  preferred_username: "alice",
  email: "alice@example.com",
  email_verified: true,
  name: "Alice Example",
};

const DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

/**
 * The clients of the DPoP and JWT client authentication tests: one that must use DPoP, one that
 * signs its assertions with a key made here (the private JWK is printed for the test to hand to the
 * CLI; only the public half is registered), one with client_secret_jwt.
 */
const { privateKey: clientPrivateKey, publicKey: clientPublicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
export const JWT_CLIENTS = {
  dpop: { id: "interop-dpop" },
  privateKeyJwt: {
    id: "interop-pkjwt",
    jwk: { ...clientPrivateKey.export({ format: "jwk" }), kid: "cli-1", alg: "ES256" },
  },
  clientSecretJwt: { id: "interop-csjwt", secret: "interop-client-secret-jwt-0123456789abcdef" },
};
export const RESOURCES = ["https://api-one.example/", "https://api-two.example/"];

const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const TOKEN_TYPE = "urn:ietf:params:oauth:token-type:";

/**
 * A CI system the provider trusts (GitHub Actions, GitLab or a Kubernetes cluster, as far as the
 * tests go): subject tokens must be ES256 JWTs signed with this key, issued by `issuer`, for this
 * provider (`aud`). The private JWK is printed for the tests, which play the CI and sign with it.
 */
const { privateKey: ciPrivateKey, publicKey: ciPublicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
export const CI = {
  issuer: "https://ci.example",
  jwk: { ...ciPrivateKey.export({ format: "jwk" }), kid: "ci-1", alg: "ES256" },
};
const ciKeys = { keys: [{ ...ciPublicKey.export({ format: "jwk" }), kid: "ci-1", alg: "ES256", use: "sig" }] };

/** The clients of logins without a person: a secret, and private_key_jwt (the JWT clients' key). */
export const MACHINE_CLIENTS = {
  secret: { id: "interop-machine", secret: "interop-machine-secret-0123456789abcdef" },
  privateKeyJwt: { id: "interop-machine-pkjwt" },
};

function machineClients() {
  const common = {
    redirect_uris: [],
    response_types: [],
    grant_types: ["client_credentials", TOKEN_EXCHANGE, JWT_BEARER, "refresh_token"],
  };
  return [
    {
      ...common,
      client_id: MACHINE_CLIENTS.secret.id,
      client_secret: MACHINE_CLIENTS.secret.secret,
      token_endpoint_auth_method: "client_secret_basic",
    },
    {
      ...common,
      client_id: MACHINE_CLIENTS.privateKeyJwt.id,
      token_endpoint_auth_method: "private_key_jwt",
      token_endpoint_auth_signing_alg: "ES256",
      jwks: { keys: [{ ...clientPublicKey.export({ format: "jwk" }), kid: "cli-1", alg: "ES256", use: "sig" }] },
    },
  ];
}

function jwtClients() {
  const common = {
    application_type: "native",
    redirect_uris: ["http://127.0.0.1/callback"],
    response_types: ["code"],
    grant_types: ["authorization_code", "refresh_token", DEVICE_CODE_GRANT],
  };
  return [
    { ...common, client_id: JWT_CLIENTS.dpop.id, token_endpoint_auth_method: "none", dpop_bound_access_tokens: true },
    {
      ...common,
      client_id: JWT_CLIENTS.privateKeyJwt.id,
      token_endpoint_auth_method: "private_key_jwt",
      token_endpoint_auth_signing_alg: "ES256",
      jwks: { keys: [{ ...clientPublicKey.export({ format: "jwk" }), kid: "cli-1", alg: "ES256", use: "sig" }] },
    },
    {
      ...common,
      client_id: JWT_CLIENTS.clientSecretJwt.id,
      client_secret: JWT_CLIENTS.clientSecretJwt.secret,
      token_endpoint_auth_method: "client_secret_jwt",
    },
  ];
}

function configuration() {
  // ES256: a P-256 key is generated in a millisecond, an RSA key takes a few hundred.
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    clients: [
      {
        client_id: CLIENTS.public.id,
        client_name: "oauth-login interop (public)",
        application_type: "native",
        token_endpoint_auth_method: "none",
        redirect_uris: ["http://127.0.0.1/callback"],
        response_types: ["code"],
        grant_types: ["authorization_code", "refresh_token", DEVICE_CODE_GRANT],
      },
      {
        client_id: CLIENTS.confidential.id,
        client_secret: CLIENTS.confidential.secret,
        client_name: "oauth-login interop (confidential)",
        application_type: "web",
        token_endpoint_auth_method: "client_secret_basic",
        redirect_uris: [args["confidential-redirect"]],
        response_types: ["code"],
        grant_types: ["authorization_code", "refresh_token", DEVICE_CODE_GRANT],
      },
      ...jwtClients(),
      ...(args.machine ? machineClients() : []),
    ],
    findAccount(_ctx, id) {
      return {
        accountId: id,
        claims() {
          return { ...ACCOUNT, sub: id };
        },
      };
    },
    claims: {
      openid: ["sub"],
      email: ["email", "email_verified"],
      profile: ["name", "preferred_username"],
    },
    scopes: ["openid", "offline_access", "email", "profile"],
    pkce: { methods: ["S256"], required: () => true },
    cookies: { keys: [randomBytes(32).toString("base64url")] },
    jwks: {
      keys: [{
        ...privateKey.export({ format: "jwk" }),
        use: "sig",
        alg: "ES256",
        kid: "interop",
      }],
    },
    clientDefaults: {
      grant_types: ["authorization_code"],
      id_token_signed_response_alg: "ES256",
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
    enabledJWA: { idTokenSigningAlgValues: ["ES256"] },
    clientBasedCORS: () => false,
    features: {
      devInteractions: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      deviceFlow: { enabled: true },
      userinfo: { enabled: true },
      rpInitiatedLogout: { enabled: false },
      clientCredentials: { enabled: args.machine },
      // Opaque access tokens for UserInfo, with no resource indicator required.
      resourceIndicators: { enabled: false },
      ...(args.dpop ? { dPoP: { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true } } : {}),
      ...(args.resources
        ? {
          resourceIndicators: {
            enabled: true,
            defaultResource: () => undefined,
            useGrantedResource: () => true,
            getResourceServerInfo(_ctx, resource) {
              if (!RESOURCES.includes(resource)) throw new errors.InvalidTarget();
              return { scope: "api:read", audience: resource, accessTokenFormat: "jwt", accessTokenTTL: 3600 };
            },
          },
        }
        : {}),
      ...(args.registration ? { registration: { enabled: true, initialAccessToken: false } } : {}),
      ...(args.api
        ? {
          resourceIndicators: {
            enabled: true,
            defaultResource: () => undefined,
            useGrantedResource: () => true,
            getResourceServerInfo(_ctx, resource) {
              if (resource !== args.api) throw new errors.InvalidTarget();
              return {
                scope: "mcp:read mcp:admin",
                audience: resource,
                accessTokenFormat: "jwt",
                accessTokenTTL: accessTokenTtl,
              };
            },
          },
        }
        : {}),
    },
    // The sign-in's time in the API's tokens, so that the API can ask for a fresh one (RFC 9470).
    ...(args.api
      ? {
        extraTokenClaims(ctx) {
          const { AuthorizationCode, RefreshToken, DeviceCode } = ctx.oidc.entities;
          const authTime = (AuthorizationCode ?? RefreshToken ?? DeviceCode)?.authTime;
          return authTime ? { auth_time: authTime } : undefined;
        },
      }
      : {}),
    // Refresh tokens only with offline_access, which oidc-provider grants only with prompt=consent
    // (OpenID Connect Core §11); every use rotates the refresh token.
    issueRefreshToken: (_ctx, client, code) =>
      client.grantTypeAllowed("refresh_token") &&
      code.scopes.has("offline_access"),
    rotateRefreshToken: true,
    ttl: {
      AccessToken: () => accessTokenTtl,
      ClientCredentials: () => accessTokenTtl,
      AuthorizationCode: 60,
      DeviceCode: 600,
      Grant: 3600,
      IdToken: 3600,
      Interaction: 600,
      RefreshToken: 86400,
      Session: 3600,
    },
  };
}

/** The provider's clock: the real one plus an offset that `POST /__clock` sets (with --clock only). */
const realNow = Date.now;
let clockOffsetMs = 0;
if (args.clock) Date.now = () => realNow() + clockOffsetMs;

function moveClock(req, res) {
  let body = "";
  req.on("data", (chunk) => body += chunk);
  req.on("end", () => {
    clockOffsetMs = Number(body) * 1000 || 0;
    res.writeHead(204).end();
  });
}

/**
 * The handler of token exchange (RFC 8693 §2.1) or JWT bearer (RFC 7523 §2.1): the subject token (or
 * assertion) must be the CI's (`CI`), for this provider, unexpired; an actor token likewise. It issues
 * an access token for the subject's `sub` (introspection names it), and for a token exchange that asks
 * for offline_access a refresh token too, which oidc-provider's own refresh_token grant then takes.
 */
function subjectGrant(kind) {
  const { jwtVerify, createLocalJWKSet } = jose;
  const keySet = createLocalJWKSet(ciKeys);
  const verify = async (token, provider, what) => {
    try {
      const options = { issuer: CI.issuer, audience: provider.issuer, algorithms: ["ES256"] };
      return (await jwtVerify(token, keySet, options)).payload;
    } catch (error) {
      throw new errors.InvalidGrant(`the ${what} is not accepted (${error.code ?? error.message})`);
    }
  };
  return async (ctx, next) => {
    const { params, client, provider } = ctx.oidc;
    const exchange = kind === "token-exchange";
    const token = exchange ? params.subject_token : params.assertion;
    if (!token) throw new errors.InvalidRequest(exchange ? "subject_token is missing" : "assertion is missing");
    if (exchange) {
      if (![`${TOKEN_TYPE}jwt`, `${TOKEN_TYPE}id_token`].includes(params.subject_token_type)) {
        throw new errors.InvalidRequest("subject_token_type must be a JWT or an ID token");
      }
      if (params.requested_token_type && params.requested_token_type !== `${TOKEN_TYPE}access_token`) {
        throw new errors.InvalidRequest("only access tokens are issued");
      }
      if (params.actor_token && !params.actor_token_type) {
        throw new errors.InvalidRequest("actor_token_type is missing");
      }
    }
    const subject = await verify(token, provider, "subject token");
    const actor = exchange && params.actor_token
      ? await verify(params.actor_token, provider, "actor token")
      : undefined;
    const scope = params.scope ?? "";
    const grant = new provider.Grant({ accountId: subject.sub, clientId: client.clientId });
    if (scope) grant.addOIDCScope(scope);
    const grantId = await grant.save();
    const gty = exchange ? "token_exchange" : "jwt_bearer";
    const at = new provider.AccessToken({
      accountId: subject.sub,
      client,
      grantId,
      gty,
      scope: scope || undefined,
      ...(actor ? { extra: { act: { sub: actor.sub } } } : {}),
    });
    const accessToken = await at.save();
    let refreshToken;
    if (exchange && scope.split(" ").includes("offline_access")) {
      refreshToken = await new provider.RefreshToken({ accountId: subject.sub, client, grantId, gty, scope }).save();
    }
    console.error(`provider: ${kind} for ${subject.sub} (jti ${subject.jti ?? "-"})`);
    ctx.body = {
      access_token: accessToken,
      token_type: at.tokenType,
      expires_in: at.expiration,
      ...(scope ? { scope } : {}),
      ...(refreshToken ? { refresh_token: refreshToken } : {}),
      ...(exchange ? { issued_token_type: `${TOKEN_TYPE}access_token` } : {}),
    };
    await next();
  };
}

const jose = args.machine ? await import("jose") : undefined;

const server = createServer();
server.listen(0, "127.0.0.1", () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration());
  if (args.machine) {
    const exchange = ["audience", "resource", "scope", "requested_token_type", "subject_token", "subject_token_type"];
    provider.registerGrantType(TOKEN_EXCHANGE, subjectGrant("token-exchange"), [
      ...exchange,
      "actor_token",
      "actor_token_type",
    ], ["audience", "resource"]);
    provider.registerGrantType(JWT_BEARER, subjectGrant("jwt-bearer"), ["assertion", "scope", "audience", "resource"]);
    // Each grant the tests count, on stderr.
    provider.on("grant.success", (ctx) => console.error(`provider: grant ${ctx.oidc.params.grant_type}`));
  }
  // Errors the tests may want to see, on stderr (the test prints it when something fails).
  for (
    const event of [
      "server_error",
      "grant.error",
      "authorization.error",
      "introspection.error",
    ]
  ) {
    provider.on(event, (...details) => {
      const error = details.find((d) => d instanceof Error);
      console.error(
        `provider: ${event}: ${error?.message ?? ""} ${error?.error_description ?? ""}`,
      );
    });
  }
  // oidc-provider sends no `interval`, so RFC 8628 clients poll every 5 s; a real server often
  // says how often to poll, and a short one keeps the device-flow tests quick.
  provider.use(async (ctx, next) => {
    await next();
    if (
      ctx.method === "POST" && ctx.path === "/device/auth" &&
      ctx.status === 200 && ctx.body?.device_code
    ) {
      ctx.body.interval = deviceInterval;
    }
  });
  const handle = provider.callback();
  server.on("request", (req, res) => {
    if (args.clock && req.method === "POST" && req.url === "/__clock") return moveClock(req, res);
    handle(req, res);
  });
  process.stdout.write(
    JSON.stringify({
      issuer,
      port,
      clients: CLIENTS,
      account: ACCOUNT,
      jwtClients: JWT_CLIENTS,
      ...(args.machine ? { machineClients: MACHINE_CLIENTS, ci: CI } : {}),
    }) + "\n",
  );
});

// oidc-provider prints notes with console.log; a reader that went away must not end the server.
process.stdout.on("error", () => {});

function stop() {
  server.closeAllConnections?.();
  server.close();
  process.exit(0);
}
process.stdin.on("end", stop);
process.stdin.on("error", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
