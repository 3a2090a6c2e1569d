// A kustomize renderer for exactly the features k8s/ uses, so the manifests
// can be rendered and validated offline on a machine without kubectl.
//
// Implemented (with kustomize v5 semantics, cross-checked against
// `kubectl kustomize` by tests/k8s when kubectl is on PATH):
//   resources   files (multi-document YAML) and directories holding their
//               own kustomization.yaml, rendered fully (their transformers
//               included) before the including kustomization's run
//   namespace   metadata.namespace of every namespaced object
//   labels      pairs added to metadata.labels, and with includeTemplates
//               to pod templates; includeSelectors must be false
//   images      name -> newName / newTag / digest on every container image
//   replicas    name -> count on Deployments
//   patches     strategic merge patches (file or inline), targeted by their
//               own kind + name or by target {kind, name}
// Every other kustomization field, patch form (JSON 6902) or `$patch`
// directive is REJECTED with an error, so this renderer can never silently
// diverge from kustomize: a new feature must be implemented here first.
import fs from "node:fs";
import path from "node:path";

import YAML from "yaml";

const KUSTOMIZATION_FILES = ["kustomization.yaml", "kustomization.yml", "Kustomization"];
const SUPPORTED_FIELDS = new Set([
  "apiVersion", "kind", "resources", "namespace", "labels", "images", "replicas", "patches",
]);

// Kinds whose scope we know. An unknown kind is an error rather than a guess
// about whether the namespace transformer touches it.
const CLUSTER_SCOPED = new Set([
  "Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass",
  "CustomResourceDefinition", "PriorityClass",
]);
const NAMESPACED = new Set([
  "ConfigMap", "Secret", "Service", "Deployment", "PersistentVolumeClaim",
  "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount", "Role", "RoleBinding",
  "ServiceMonitor", "StatefulSet", "DaemonSet", "Job", "CronJob",
]);
// Kinds whose pod template sits at spec.template.
const POD_TEMPLATE_KINDS = new Set([
  "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job",
]);

export class KustomizeError extends Error {}

function fail(where, message) {
  throw new KustomizeError(`${where}: ${message}`);
}

// Parses a multi-document YAML file into plain objects (empty documents
// dropped), failing on any YAML error.
export function parseYamlDocuments(text, where) {
  const objects = [];
  for (const doc of YAML.parseAllDocuments(text)) {
    if (doc.errors.length > 0) fail(where, `YAML: ${doc.errors[0].message}`);
    const value = doc.toJS();
    if (value === null || value === undefined) continue;
    if (typeof value !== "object" || Array.isArray(value)) {
      fail(where, "every YAML document must be a Kubernetes object (a map)");
    }
    objects.push(value);
  }
  return objects;
}

export function objectId(obj) {
  const ns = obj.metadata?.namespace ?? "";
  return `${obj.apiVersion}/${obj.kind}/${ns}/${obj.metadata?.name}`;
}

function checkKind(obj, where) {
  if (!obj.apiVersion || !obj.kind || !obj.metadata?.name) {
    fail(where, "every object needs apiVersion, kind and metadata.name");
  }
  if (!CLUSTER_SCOPED.has(obj.kind) && !NAMESPACED.has(obj.kind)) {
    fail(where, `kind ${obj.kind} has no known scope; add it to kustomize.mjs`);
  }
}

function findKustomization(dir) {
  for (const name of KUSTOMIZATION_FILES) {
    const file = path.join(dir, name);
    if (fs.existsSync(file)) return file;
  }
  return null;
}

// ---------------------------------------------------------------------------
// Strategic merge patch. Lists merge by the key Kubernetes declares for
// them (patchMergeKey); lists without one are replaced; null deletes.

function mergeKeyFor(listKey, parentPath) {
  switch (listKey) {
    case "containers":
    case "initContainers":
    case "ephemeralContainers":
    case "env":
    case "volumes":
    case "imagePullSecrets":
      return "name";
    case "volumeMounts":
      return "mountPath";
    case "ports":
      // kustomize merges ports on (port, protocol) pairs with defaults and
      // quirks of its own (a patch's protocol: TCP is dropped when the base
      // omits it); not implemented, so never guessed.
      throw new KustomizeError(`patching a ports list (${parentPath}) is not implemented`);
    default:
      return null;
  }
}

function isMap(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function rejectDirectives(patch, where) {
  if (Array.isArray(patch)) {
    for (const item of patch) rejectDirectives(item, where);
  } else if (isMap(patch)) {
    for (const [k, v] of Object.entries(patch)) {
      if (k.startsWith("$")) fail(where, `patch directive ${k} is not implemented`);
      rejectDirectives(v, where);
    }
  }
}

function mergeMap(base, patch, pathSoFar) {
  const out = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      delete out[key];
    } else if (isMap(value) && isMap(out[key])) {
      out[key] = mergeMap(out[key], value, `${pathSoFar}.${key}`);
    } else if (Array.isArray(value) && Array.isArray(out[key])) {
      out[key] = mergeList(out[key], value, key, pathSoFar);
    } else {
      out[key] = stripNulls(value);
    }
  }
  return out;
}

function stripNulls(value) {
  if (Array.isArray(value)) return value.map(stripNulls);
  if (!isMap(value)) return value;
  const out = {};
  for (const [k, v] of Object.entries(value)) {
    if (v !== null) out[k] = stripNulls(v);
  }
  return out;
}

function mergeList(base, patch, listKey, parentPath) {
  const key = mergeKeyFor(listKey, parentPath);
  if (key === null || !base.every(isMap) || !patch.every(isMap)) {
    return stripNulls(patch);
  }
  // kustomize (kyaml) orders the result as the patch's items first, in the
  // patch's order, then the base's remaining items in their order.
  const itemPath = `${parentPath}.${listKey}[]`;
  const out = [];
  for (const item of patch) {
    if (item[key] === undefined) {
      throw new KustomizeError(`patch list ${listKey} item lacks its merge key ${key}`);
    }
    const existing = base.find((b) => b[key] === item[key]);
    out.push(existing ? mergeMap(existing, item, itemPath) : stripNulls(item));
  }
  for (const item of base) {
    if (!patch.some((p) => p[key] === item[key])) out.push({ ...item });
  }
  return out;
}

export function strategicMerge(base, patch) {
  return mergeMap(base, patch, "");
}

// ---------------------------------------------------------------------------
// Transformers.

function applyPatches(objects, patches, dir, where) {
  for (const [i, entry] of patches.entries()) {
    const at = `${where}: patches[${i}]`;
    for (const k of Object.keys(entry)) {
      if (!["path", "patch", "target"].includes(k)) fail(at, `field ${k} is not implemented`);
    }
    if ((entry.path === undefined) === (entry.patch === undefined)) {
      fail(at, "exactly one of path and patch");
    }
    const text = entry.path !== undefined
      ? fs.readFileSync(path.join(dir, entry.path), "utf8")
      : entry.patch;
    const docs = YAML.parseAllDocuments(text).map((d) => d.toJS()).filter((d) => d != null);
    if (docs.length !== 1) fail(at, "a patch must hold exactly one document");
    const patch = docs[0];
    if (Array.isArray(patch)) fail(at, "JSON 6902 patches are not implemented");
    rejectDirectives(patch, at);
    let matches;
    if (entry.target !== undefined) {
      for (const k of Object.keys(entry.target)) {
        if (!["kind", "name"].includes(k)) fail(at, `target.${k} is not implemented`);
      }
      matches = objects.filter((o) =>
        (entry.target.kind === undefined || o.kind === entry.target.kind) &&
        (entry.target.name === undefined || o.metadata.name === entry.target.name));
    } else {
      if (!patch.kind || !patch.metadata?.name) {
        fail(at, "a patch without target needs kind and metadata.name");
      }
      matches = objects.filter((o) =>
        o.kind === patch.kind && o.metadata.name === patch.metadata.name &&
        (patch.metadata.namespace === undefined ||
          o.metadata.namespace === patch.metadata.namespace));
    }
    if (matches.length === 0) fail(at, "matches no resource");
    for (const obj of matches) {
      const p = entry.target !== undefined
        ? { ...patch, metadata: { ...patch.metadata, name: obj.metadata.name } }
        : patch;
      // The patch cannot rename or move what it patches.
      const merged = strategicMerge(obj, p);
      merged.apiVersion = obj.apiVersion;
      merged.kind = obj.kind;
      merged.metadata = { ...merged.metadata, name: obj.metadata.name };
      if (obj.metadata.namespace !== undefined) merged.metadata.namespace = obj.metadata.namespace;
      objects[objects.indexOf(obj)] = merged;
    }
  }
}

function applyNamespace(objects, namespace) {
  for (const obj of objects) {
    if (NAMESPACED.has(obj.kind)) obj.metadata = { ...obj.metadata, namespace };
  }
}

function applyLabels(objects, labels, where) {
  for (const [i, entry] of labels.entries()) {
    const at = `${where}: labels[${i}]`;
    for (const k of Object.keys(entry)) {
      if (!["pairs", "includeSelectors", "includeTemplates"].includes(k)) {
        fail(at, `field ${k} is not implemented`);
      }
    }
    if (entry.includeSelectors) fail(at, "includeSelectors: true is not implemented");
    const pairs = entry.pairs ?? {};
    for (const obj of objects) {
      obj.metadata.labels = { ...(obj.metadata.labels ?? {}), ...pairs };
      if (entry.includeTemplates && POD_TEMPLATE_KINDS.has(obj.kind) && obj.spec?.template) {
        const meta = obj.spec.template.metadata ?? {};
        obj.spec.template.metadata = { ...meta, labels: { ...(meta.labels ?? {}), ...pairs } };
      } else if (entry.includeTemplates && obj.kind === "CronJob") {
        fail(at, "includeTemplates on a CronJob is not implemented");
      }
    }
  }
}

// Splits "repo/name:tag@sha256:..." into name, tag and digest.
export function splitImage(image) {
  let rest = image;
  let digest = null;
  const atSign = rest.indexOf("@");
  if (atSign >= 0) {
    digest = rest.slice(atSign + 1);
    rest = rest.slice(0, atSign);
  }
  let tag = null;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  return { name: rest, tag, digest };
}

function rewriteImages(node, images) {
  if (Array.isArray(node)) {
    for (const item of node) rewriteImages(item, images);
    return;
  }
  if (!isMap(node)) return;
  for (const [key, value] of Object.entries(node)) {
    if ((key === "containers" || key === "initContainers") && Array.isArray(value)) {
      for (const container of value) {
        if (typeof container?.image !== "string") continue;
        const parts = splitImage(container.image);
        const rule = images.find((r) => r.name === parts.name);
        if (!rule) continue;
        let image = rule.newName ?? parts.name;
        if (rule.digest !== undefined) {
          image += `@${rule.digest}`;
        } else if (rule.newTag !== undefined) {
          image += `:${rule.newTag}`;
        } else {
          if (parts.tag !== null) image += `:${parts.tag}`;
          if (parts.digest !== null) image += `@${parts.digest}`;
        }
        container.image = image;
      }
    }
    rewriteImages(value, images);
  }
}

function applyImages(objects, images, where) {
  for (const [i, rule] of images.entries()) {
    for (const k of Object.keys(rule)) {
      if (!["name", "newName", "newTag", "digest"].includes(k)) {
        fail(`${where}: images[${i}]`, `field ${k} is not implemented`);
      }
    }
    if (rule.newTag !== undefined && typeof rule.newTag !== "string") {
      fail(`${where}: images[${i}]`, "newTag must be a string (quote it)");
    }
  }
  for (const obj of objects) rewriteImages(obj, images);
}

function applyReplicas(objects, replicas, where) {
  for (const [i, rule] of replicas.entries()) {
    const at = `${where}: replicas[${i}]`;
    for (const k of Object.keys(rule)) {
      if (!["name", "count"].includes(k)) fail(at, `field ${k} is not implemented`);
    }
    const matches = objects.filter((o) => o.kind === "Deployment" && o.metadata.name === rule.name);
    if (matches.length === 0) fail(at, `no Deployment named ${rule.name}`);
    for (const obj of matches) obj.spec = { ...obj.spec, replicas: rule.count };
  }
}

// ---------------------------------------------------------------------------

// Renders the kustomization in `dir` into a list of objects, in resource
// order. Throws KustomizeError on anything unsupported or inconsistent.
export function render(dir) {
  const file = findKustomization(dir);
  if (file === null) fail(dir, "no kustomization.yaml");
  const where = path.relative(process.cwd(), file) || file;
  const docs = parseYamlDocuments(fs.readFileSync(file, "utf8"), where);
  if (docs.length !== 1) fail(where, "must hold one document");
  const k = docs[0];
  for (const field of Object.keys(k)) {
    if (!SUPPORTED_FIELDS.has(field)) {
      fail(where, `kustomization field "${field}" is not implemented by this renderer`);
    }
  }
  if (k.apiVersion !== undefined && k.apiVersion !== "kustomize.config.k8s.io/v1beta1") {
    fail(where, `apiVersion ${k.apiVersion} is not supported`);
  }
  if (k.kind !== undefined && k.kind !== "Kustomization") fail(where, `kind ${k.kind} is not supported`);

  let objects = [];
  for (const entry of k.resources ?? []) {
    const target = path.resolve(dir, entry);
    if (!fs.existsSync(target)) fail(where, `resource ${entry} does not exist`);
    const loaded = fs.statSync(target).isDirectory()
      ? render(target)
      : parseYamlDocuments(fs.readFileSync(target, "utf8"), path.relative(process.cwd(), target));
    for (const obj of loaded) checkKind(obj, `${where}: ${entry}`);
    objects.push(...loaded);
  }
  const seen = new Set();
  for (const obj of objects) {
    const id = objectId(obj);
    if (seen.has(id)) fail(where, `two resources have the id ${id}`);
    seen.add(id);
  }
  objects = structuredClone(objects);

  // kustomize's builtin transformer order: patches, namespace, labels,
  // replicas, images.
  applyPatches(objects, k.patches ?? [], dir, where);
  if (k.namespace !== undefined) applyNamespace(objects, k.namespace);
  applyLabels(objects, k.labels ?? [], where);
  applyReplicas(objects, k.replicas ?? [], where);
  applyImages(objects, k.images ?? [], where);
  return objects;
}
