// A minimal Dockerfile reader for static checks: instructions grouped into
// stages, continuation lines joined, comments dropped. No container engine
// runs where the tests run, so the image is checked from its recipe.

// Returns [{name, from, instructions: [{op, args}]}] in file order.
export function parseDockerfile(text) {
  const stages = [];
  let pending = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (pending === "" && (line === "" || line.startsWith("#"))) continue;
    if (line.startsWith("#")) continue;  // a comment inside a continuation
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = "";
    const space = full.indexOf(" ");
    const op = full.slice(0, space < 0 ? full.length : space).toUpperCase();
    const args = space < 0 ? "" : full.slice(space + 1).trim();
    if (op === "FROM") {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      stages.push({ from: m ? m[1] : args, name: m?.[2] ?? String(stages.length), instructions: [] });
    } else if (op === "ARG" && stages.length === 0) {
      continue;  // global build arguments before the first FROM
    } else {
      if (stages.length === 0) throw new Error(`${op} before the first FROM`);
      stages.at(-1).instructions.push({ op, args });
    }
  }
  if (pending !== "") throw new Error("the file ends inside a continuation line");
  return stages;
}

// The packages `apt-get install` names in a stage's RUN instructions.
export function aptPackages(stage) {
  const packages = [];
  for (const { op, args } of stage.instructions) {
    if (op !== "RUN") continue;
    for (const command of args.split(/&&|;/)) {
      const words = command.trim().split(/\s+/);
      const at = words.indexOf("install");
      if (words[0] !== "apt-get" || at < 0) continue;
      packages.push(...words.slice(at + 1).filter((w) => !w.startsWith("-")));
    }
  }
  return packages;
}
