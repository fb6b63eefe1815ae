// A scripted browser for the interop tests: plain HTTP with a cookie jar, following redirects and
// filling in oidc-provider's development pages the way a person would.
//
//   node tests/interop/browser.mjs URL
//
// It follows redirects, signs in on the devInteractions login form (login name: $INTEROP_LOGIN),
// approves the consent form (or cancels, with INTEROP_DECISION=deny), confirms a device code
// (RFC 8628; the code typed on the input page is $INTEROP_USER_CODE), and stops at the first page
// it has nothing to do on: usually oauth-login's loopback callback page.
//
// With $INTEROP_STOP_AT (a URL prefix), it does not load an address that starts with it: it reports
// that address as {"stoppedAt": URL} instead (a test then loads it itself, later).
//
// What it saw is written as JSON to the file named by $INTEROP_BROWSER_OUT (oauth-login runs the
// browser with stdout discarded), else to stdout:
//   {"status":200,"title":"Signed in","text":"Signed in as alice — ...","url":"...","visited":[...]}
// or {"error":"..."} when it failed, with exit code 1.
import { writeFileSync } from "node:fs";

const MAX_STEPS = 30;
const TIMEOUT_MS = 8_000;
const login = process.env.INTEROP_LOGIN || "alice";
const decision = process.env.INTEROP_DECISION === "deny" ? "deny" : "approve";
const userCode = process.env.INTEROP_USER_CODE ?? "";

/** Cookies by name, scoped by host and path; enough for oidc-provider's interaction cookies. */
class CookieJar {
  #cookies = new Map();

  store(url, response) {
    for (const header of response.headers.getSetCookie()) {
      const [pair, ...attributes] = header.split(";").map((part) => part.trim());
      const eq = pair.indexOf("=");
      if (eq < 1) continue;
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let path = "/";
      let expired = value === "";
      for (const attribute of attributes) {
        const [key, val = ""] = attribute.split("=");
        const lower = key.toLowerCase();
        if (lower === "path" && val.startsWith("/")) path = val;
        if (lower === "max-age" && Number(val) <= 0) expired = true;
        if (lower === "expires" && Date.parse(val) <= Date.now()) expired = true;
      }
      const key = `${url.hostname} ${path} ${name}`;
      if (expired) this.#cookies.delete(key);
      else this.#cookies.set(key, { host: url.hostname, path, name, value });
    }
  }

  header(url) {
    const matching = [...this.#cookies.values()].filter((c) =>
      c.host === url.hostname &&
      (url.pathname === c.path || url.pathname.startsWith(c.path.endsWith("/") ? c.path : `${c.path}/`))
    );
    return matching.map((c) => `${c.name}=${c.value}`).join("; ");
  }
}

const decode = (text) =>
  text.replace(/&#(\d+);/g, (_, n) => String.fromCharCode(Number(n)))
    .replace(/&#x([0-9a-f]+);/gi, (_, n) => String.fromCharCode(parseInt(n, 16)))
    .replace(/&quot;/g, '"').replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");

const attribute = (tag, name) => {
  const match = tag.match(new RegExp(`\\s${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)'|([^\\s>]+))`, "i"));
  return match ? decode(match[1] ?? match[2] ?? match[3]) : undefined;
};

/** The page's visible text, roughly: tags, scripts and styles removed, whitespace collapsed. */
const visibleText = (html) =>
  decode(
    html.replace(/<(script|style)\b[\s\S]*?<\/\1>/gi, " ").replace(/<details\b[\s\S]*?<\/details>/gi, " ")
      .replace(/<[^>]+>/g, " "),
  ).replace(/\s+/g, " ").trim();

/** The first POST form on the page, with the values a person would submit. */
function formToSubmit(html) {
  for (const match of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const [, tag, inner] = match;
    if ((attribute(tag, "method") ?? "get").toLowerCase() !== "post") continue;
    const fields = new URLSearchParams();
    for (const [input] of inner.matchAll(/<input\b[^>]*>/gi)) {
      const name = attribute(input, "name");
      if (!name) continue;
      const type = (attribute(input, "type") ?? "text").toLowerCase();
      let value = attribute(input, "value") ?? "";
      if (name === "login") value ||= login; // pre-filled from login_hint, as a browser shows it
      else if (name === "password") value = "any password";
      else if (name === "user_code" && type === "text" && value === "") value = userCode;
      fields.set(name, value);
    }
    return { action: attribute(tag, "action") ?? "", id: attribute(tag, "id"), fields };
  }
  return undefined;
}

async function browse(start) {
  const jar = new CookieJar();
  const visited = [];
  let typedCode = false;
  let request = { url: new URL(start), method: "GET", body: undefined };
  for (let step = 0; step < MAX_STEPS; step++) {
    const stopAt = process.env.INTEROP_STOP_AT;
    if (stopAt && step > 0 && request.url.href.startsWith(stopAt)) return { stoppedAt: request.url.href, visited };
    visited.push(`${request.method} ${request.url.origin}${request.url.pathname}`);
    const headers = { "user-agent": "oauth-login-interop-browser/1", accept: "text/html" };
    const cookie = jar.header(request.url);
    if (cookie) headers.cookie = cookie;
    if (request.body) headers["content-type"] = "application/x-www-form-urlencoded";
    const response = await fetch(request.url, {
      method: request.method,
      headers,
      body: request.body,
      redirect: "manual",
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    jar.store(request.url, response);
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      request = { url: new URL(location, request.url), method: "GET", body: undefined };
      continue;
    }
    const html = await response.text();
    const form = formToSubmit(html);
    const cancel = html.match(/<a\s[^>]*href="([^"]*)"[^>]*>\s*\[ Cancel \]/i);
    if (form && decision === "deny" && cancel) {
      request = { url: new URL(decode(cancel[1]), request.url), method: "GET", body: undefined };
      continue;
    }
    if (form && form.id === "op.deviceConfirmForm" && decision === "deny") form.fields.set("abort", "yes");
    // The code-input page comes back after an aborted or failed confirmation: a person stops there.
    const typeCode = form?.id === "op.deviceInputForm" && userCode !== "" && !typedCode;
    if (typeCode) typedCode = true;
    if (form && (form.id !== "op.deviceInputForm" || typeCode)) {
      request = { url: new URL(form.action, request.url), method: "POST", body: form.fields.toString() };
      continue;
    }
    const title = html.match(/<title>([\s\S]*?)<\/title>/i);
    return {
      status: response.status,
      title: title ? decode(title[1]).trim() : "",
      text: visibleText(html.replace(/<head\b[\s\S]*?<\/head>/i, " ")),
      url: request.url.href,
      visited,
    };
  }
  throw new Error(`no final page after ${MAX_STEPS} steps`);
}

function report(result) {
  const json = JSON.stringify(result) + "\n";
  if (process.env.INTEROP_BROWSER_OUT) writeFileSync(process.env.INTEROP_BROWSER_OUT, json);
  else process.stdout.write(json);
}

const url = process.argv[2];
if (!url) {
  console.error("usage: node browser.mjs URL");
  process.exit(2);
}
try {
  report(await browse(url));
} catch (error) {
  report({ error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
  process.exit(1);
}
