// The benchmark's floor: `deno run` of a script that does nothing, with the same flags as the other cases.
