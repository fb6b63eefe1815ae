/**
 * The benchmark's "same work" case: what a cached `token` does, written the minimal way. It reads one
 * JSON file (the cache entry given as its argument) and prints one line (its access token). The cached
 * `token` line of `deno task bench` is compared with this as well as with the empty script.
 *
 * @module
 */
const entry = JSON.parse(Deno.readTextFileSync(Deno.args[0]));
console.log(entry.accessToken);
