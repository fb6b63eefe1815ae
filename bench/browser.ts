/**
 * The benchmark's scripted browser: `login.ts` runs it through `$BROWSER` with the URL to open. It loads
 * the URL with fetch and follows the redirects (the loopback start page, the mock's `/authorize`, which
 * approves at once, and the tool's callback), reads the last page and exits 0 when that page is a 2xx.
 *
 *     BROWSER="deno run --allow-net=127.0.0.1 bench/browser.ts" deno run … login.ts login …
 *
 * @module
 */
const [url] = Deno.args;
if (!url) {
  console.error("usage: browser.ts URL");
  Deno.exit(2);
}
const response = await fetch(url, { signal: AbortSignal.timeout(20_000) });
await response.text();
if (!response.ok) {
  console.error(`browser.ts: ${response.status} ${response.statusText} from ${response.url}`);
  Deno.exit(1);
}
