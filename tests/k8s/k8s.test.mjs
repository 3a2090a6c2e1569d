// ===========================================================================
// Kubernetes manifests and container image, checked offline.
//
//  * Each overlay of k8s/overlays renders with the Node kustomize renderer
//    (k8s/validate/lib/kustomize.mjs); every object validates against the
//    Kubernetes schemas (kubernetes-models) and the project's rules
//    (k8s/validate/lib/rules.mjs).
//  * Where kubectl is on PATH, `kubectl kustomize` renders the same
//    overlays and small fixtures of every renderer feature, and the two
//    renderings must be equal (sorted by object id): the cross-check that
//    the Node renderer has kustomize's semantics. Skipped, with a note,
//    where kubectl is absent (it is no Debian package).
//  * The renderer rejects kustomization features it does not implement,
//    and each project rule catches a broken manifest.
//  * The Dockerfile, which cannot be built here (no container engine), is
//    read statically: Debian 12 stages, numeric non-root users, the
//    binaries it builds are the ones the manifests run, and the runtime
//    packages it installs provide every library the built binaries need
//    (K8S_BINARIES, set by CMake, names them).
// ===========================================================================
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";

import { aptPackages, parseDockerfile } from "../../k8s/validate/lib/dockerfile.mjs";
import { KustomizeError, objectId, parseYamlDocuments, render } from "../../k8s/validate/lib/kustomize.mjs";
import { OPERATOR_SECRETS_ANNOTATION, ruleProblems, schemaProblems } from "../../k8s/validate/lib/rules.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const K8S = path.join(ROOT, "k8s");

// The overlays and the gateway each runs: one replica on SQLite (its
// ReadWriteOnce volume, so strategy Recreate) or several on PostgreSQL.
// The Secrets each expects the operator to have created are declared on
// its Namespace (rules.mjs, OPERATOR_SECRETS_ANNOTATION).
const OVERLAYS = {
  dev: { store: "sqlite", replicas: 1 },
  production: { store: "sqlite", replicas: 1 },
  replicated: { store: "postgres", replicas: 3 },
};

const KUBECTL = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" }).status === 0;

function kubectlRender(dir) {
  return parseYamlDocuments(
    execFileSync("kubectl", ["kustomize", dir], { encoding: "utf8", timeout: 60000 }), `kubectl kustomize ${dir}`);
}

function byId(objects) {
  return Object.fromEntries(objects.map((o) => [objectId(o), o]).sort(([a], [b]) => a.localeCompare(b)));
}

// Renders `dir` both ways and asserts the results are equal.
function assertSameAsKubectl(t, dir) {
  if (!KUBECTL) {
    t.skip("kubectl is not on PATH: no cross-check against kustomize");
    return;
  }
  assert.deepStrictEqual(byId(render(dir)), byId(kubectlRender(dir)));
}

test("k8s/overlays holds exactly the overlays this test knows", () => {
  assert.deepStrictEqual(fs.readdirSync(path.join(K8S, "overlays")).sort(), Object.keys(OVERLAYS).sort());
});

for (const [name, options] of Object.entries(OVERLAYS)) {
  const dir = path.join(K8S, "overlays", name);

  test(`overlay ${name}: every object validates against the Kubernetes schemas`, async () => {
    const objects = render(dir);
    assert.ok(objects.length > 0);
    assert.deepStrictEqual(await schemaProblems(objects), []);
    console.log(`overlay ${name}: ${objects.length} objects: ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(", ")}`);
  });

  test(`overlay ${name}: the project's rules hold`, () => {
    assert.deepStrictEqual(ruleProblems(render(dir)), []);
  });

  test(`overlay ${name}: renders as kubectl kustomize does`, (t) => {
    assertSameAsKubectl(t, dir);
  });

  const shape = options.store === "sqlite" ? "single-replica gateway" : `${options.replicas} gateway replicas on PostgreSQL`;
  test(`overlay ${name}: one namespace, created by the overlay, ${shape}`, () => {
    const objects = render(dir);
    const ns = objects.find((o) => o.kind === "Namespace");
    assert.ok(ns, "the overlay creates its namespace, so one kubectl apply -k suffices");
    for (const o of objects.filter((x) => x.kind !== "Namespace")) {
      assert.equal(o.metadata.namespace, ns.metadata.name, objectId(o));
    }
    const gateway = objects.find((o) => o.kind === "Deployment" && o.metadata.name === "assistants-gateway");
    assert.equal(gateway.spec.replicas, options.replicas);
    assert.equal(gateway.spec.strategy.type, options.store === "sqlite" ? "Recreate" : "RollingUpdate");
    assert.equal(objects.some((o) => o.kind === "PersistentVolumeClaim"), options.store === "sqlite");
  });

  test(`overlay ${name}: k8s/README.md documents creating each operator-provided Secret with the keys read`, () => {
    const objects = render(dir);
    const ns = objects.find((o) => o.kind === "Namespace");
    const declared = (ns.metadata.annotations?.[OPERATOR_SECRETS_ANNOTATION] ?? "").split(/[\s,]+/).filter(Boolean);
    const documented = documentedSecrets();
    for (const secret of declared) {
      assert.ok(documented.has(secret), `k8s/README.md has no "kubectl create secret generic ${secret} ..."`);
      const read = secretKeysRead(objects, secret);
      assert.ok(read.size > 0, `nothing reads a key of Secret ${secret}`);
      for (const key of read) {
        assert.ok(documented.get(secret).has(key), `k8s/README.md creates Secret ${secret} without key ${key}`);
      }
    }
  });
}

// Secret name -> Set of keys, from each `create secret generic NAME
// --from-literal=KEY=... --from-file=[KEY=]PATH` command in k8s/README.md.
function documentedSecrets() {
  const readme = fs.readFileSync(path.join(K8S, "README.md"), "utf8");
  const out = new Map();
  for (const m of readme.matchAll(/create secret generic ([\w.-]+)((?:\s+--from-(?:literal|file)=\S+)+)/g)) {
    const keys = out.get(m[1]) ?? new Set();
    for (const [, kind, arg] of m[2].matchAll(/--from-(literal|file)=(\S+)/g)) {
      keys.add(kind === "literal" || arg.includes("=") ? arg.split("=")[0] : path.basename(arg));
    }
    out.set(m[1], keys);
  }
  return out;
}

// The keys of Secret `name` the rendering reads: secretKeyRef keys, and the
// files under its mounts that env values or JSON config files name.
function secretKeysRead(objects, name) {
  const strings = [];
  const collect = (v) => {
    if (typeof v === "string") strings.push(v);
    else if (v !== null && typeof v === "object") Object.values(v).forEach(collect);
  };
  for (const cm of objects.filter((o) => o.kind === "ConfigMap")) {
    for (const text of Object.values(cm.data ?? {})) {
      try {
        collect(JSON.parse(text));
      } catch {
        // Not a JSON config file.
      }
    }
  }
  const keys = new Set();
  for (const d of objects.filter((o) => o.kind === "Deployment")) {
    const spec = d.spec.template.spec;
    for (const c of spec.containers) {
      for (const e of c.env ?? []) {
        if (e.valueFrom?.secretKeyRef?.name === name) keys.add(e.valueFrom.secretKeyRef.key);
      }
      const files = [...strings, ...(c.env ?? []).map((e) => e.value).filter(Boolean)];
      for (const m of c.volumeMounts ?? []) {
        if ((spec.volumes ?? []).find((v) => v.name === m.name)?.secret?.secretName !== name) continue;
        for (const file of files.filter((f) => f.startsWith(`${m.mountPath}/`))) keys.add(file.slice(m.mountPath.length + 1));
      }
    }
  }
  return keys;
}

test("overlay replicated: PostgreSQL from Secret assistants-postgres, no volume, rolling, spread, probes as on SQLite", () => {
  const objects = render(path.join(K8S, "overlays/replicated"));
  const deployment = objects.find((o) => o.kind === "Deployment" && o.metadata.name === "assistants-gateway");
  const pod = deployment.spec.template.spec;
  const gateway = pod.containers.find((c) => c.name === "gateway");
  const env = Object.fromEntries(gateway.env.map((e) => [e.name, e]));
  assert.deepStrictEqual(env.ASSISTANTS_STORE_POSTGRES_URL.valueFrom,
    { secretKeyRef: { name: "assistants-postgres", key: "url" } });
  assert.deepStrictEqual(env.ASSISTANTS_CLUSTER_REPLICA_ID.valueFrom, { fieldRef: { fieldPath: "metadata.name" } });
  assert.ok(!objects.some((o) => o.kind === "Secret"), "the overlay defines no Secret: the operator creates them");
  assert.ok(!pod.volumes.some((v) => v.persistentVolumeClaim));
  assert.ok(!gateway.volumeMounts.some((m) => m.mountPath === "/var/lib/assistants"));

  const config = JSON.parse(objects.find((o) => o.kind === "ConfigMap").data["gateway.json"]);
  assert.equal(config.cluster.run_lease_ttl_ms, 10000);
  assert.equal(config.store.path, undefined);
  assert.equal(config.store.postgres_url, undefined);
  assert.ok(pod.terminationGracePeriodSeconds * 1000 >
    config.shutdown.grace_ms + gateway.lifecycle.preStop.sleep.seconds * 1000);

  assert.equal(deployment.spec.replicas, 3);
  assert.deepStrictEqual(deployment.spec.strategy, { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
  const pdb = objects.find((o) => o.kind === "PodDisruptionBudget");
  assert.equal(pdb.spec.maxUnavailable, 1);
  assert.deepStrictEqual(pod.topologySpreadConstraints.map((c) => [c.topologyKey, c.whenUnsatisfiable]),
    [["kubernetes.io/hostname", "ScheduleAnyway"], ["topology.kubernetes.io/zone", "ScheduleAnyway"]]);

  // The probes are the single-replica gateway's, unchanged.
  const single = render(path.join(K8S, "overlays/production")).find((o) => o.kind === "Deployment")
    .spec.template.spec.containers.find((c) => c.name === "gateway");
  for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
    assert.deepStrictEqual(gateway[probe], single[probe], probe);
  }

  // The example workers register through the Service, so with any replica.
  const service = objects.find((o) => o.kind === "Service" && o.metadata.name === "assistants-gateway");
  const workers = objects.filter((o) => o.kind === "Deployment" && o.metadata.name !== "assistants-gateway");
  assert.deepStrictEqual(workers.map((o) => o.metadata.name).sort(), ["calculator-worker", "stock-price-worker"]);
  for (const w of workers) {
    const target = w.spec.template.spec.containers[0].env.find((e) => e.name === "ASSISTANTS_GATEWAY").value;
    assert.equal(target, `${service.metadata.name}:${service.spec.ports.find((p) => p.name === "grpc").port}`);
  }
});

test("the SQLite layout (k8s/sqlite) is where the volume, one replica and Recreate come from", () => {
  const base = render(path.join(K8S, "base"));
  const gateway = base.find((o) => o.kind === "Deployment");
  assert.equal(gateway.spec.replicas, undefined);
  assert.equal(gateway.spec.strategy, undefined);
  assert.ok(!base.some((o) => ["PersistentVolumeClaim", "ConfigMap"].includes(o.kind)), "the base holds no store");
  const sqlite = render(path.join(K8S, "sqlite"));
  const pod = sqlite.find((o) => o.kind === "Deployment").spec.template.spec;
  const claim = pod.volumes.find((v) => v.persistentVolumeClaim).persistentVolumeClaim.claimName;
  assert.deepStrictEqual(sqlite.find((o) => o.kind === "PersistentVolumeClaim").metadata.name, claim);
  assert.ok(sqlite.every((o) => o.metadata.labels?.["app.kubernetes.io/part-of"] === "assistants"), "labelled as the base is");
});

test("overlay dev: fake-openai runs beside the gateway and the workers register with it", () => {
  const objects = render(path.join(K8S, "overlays/dev"));
  const pod = objects.find((o) => o.metadata.name === "assistants-gateway" && o.kind === "Deployment").spec.template.spec;
  const fake = pod.containers.find((c) => c.name === "fake-openai");
  const gateway = pod.containers.find((c) => c.name === "gateway");
  const listen = fake.args.find((a) => a.startsWith("--listen=")).slice("--listen=".length);
  const baseUrl = gateway.env.find((e) => e.name === "OPENAI_BASE_URL").value;
  // fake-openai only listens on 127.0.0.1, shared inside the pod; the
  // gateway wants the base URL up to the API version.
  assert.equal(baseUrl, `http://${listen}/v1`);
  assert.match(listen, /^127\.0\.0\.1:\d+$/);
  assert.deepStrictEqual(
    objects.filter((o) => o.kind === "Deployment").map((o) => o.metadata.name).sort(),
    ["assistants-gateway", "calculator-worker", "stock-price-worker"]);
});

test("overlay dev: the demo API key k8s/README.md documents is the one stored", async () => {
  const { createHash } = await import("node:crypto");
  const secret = render(path.join(K8S, "overlays/dev")).find((o) => o.metadata.name === "gateway-api-keys");
  const keys = JSON.parse(secret.stringData["api-keys.json"]).keys;
  assert.deepStrictEqual(keys.map((k) => k.sha256), [createHash("sha256").update("sk-assistants-dev").digest("hex")]);
  assert.match(fs.readFileSync(path.join(K8S, "README.md"), "utf8"), /Bearer sk-assistants-dev/);
});

// ---------------------------------------------------------------------------
// The renderer on fixtures: every feature it implements, against kubectl.

const fixtureDirs = [];
after(() => {
  for (const dir of fixtureDirs) fs.rmSync(dir, { recursive: true, force: true });
});

function fixture(files) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8s-fixture-"));
  fixtureDirs.push(dir);
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

const DEPLOYMENT = `apiVersion: apps/v1
kind: Deployment
metadata: {name: app, labels: {a: b}}
spec:
  replicas: 3
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      initContainers: [{name: init, image: "reg.io/x/tool:1@sha256:${"0".repeat(64)}"}]
      containers:
        - name: main
          image: app
          env: [{name: A, value: a}, {name: B, value: b}]
          ports: [{containerPort: 80, name: http}]
          volumeMounts: [{name: v, mountPath: /v}]
      volumes: [{name: v, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: app}
spec:
  selector: {a: b}
  ports: [{port: 80, targetPort: http}]
`;

const FEATURE_FIXTURES = {
  "nested directories, namespace, labels with templates, images, replicas": {
    "base/kustomization.yaml": "resources: [app.yaml]\nlabels:\n- pairs: {tier: base}\n  includeTemplates: true\n",
    "base/app.yaml": DEPLOYMENT,
    "overlay/kustomization.yaml": `namespace: fx
resources: [../base, ns.yaml, cm.yaml]
labels:
- pairs: {env: test}
images:
- {name: app, newName: reg.io/app, newTag: "2.0"}
- {name: reg.io/x/tool, newTag: "9"}
replicas:
- {name: app, count: 1}
`,
    "overlay/ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: fx}\n",
    "overlay/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: v}\n---\n",
  },
  "strategic merge patches: lists by merge key, null deletes, target": {
    "kustomization.yaml": `resources: [app.yaml]
patches:
- path: p1.yaml
- target: {kind: Service, name: app}
  patch: |
    apiVersion: v1
    kind: Service
    metadata: {name: ignored}
    spec:
      type: NodePort
`,
    "app.yaml": DEPLOYMENT,
    "p1.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: app, labels: null}
spec:
  template:
    spec:
      containers:
        - name: side
          image: side:1
        - name: main
          env: [{name: C, value: c}, {name: A, value: a2}]
          volumeMounts: [{name: w, mountPath: /w}]
      volumes: [{name: w, emptyDir: {}}, {name: v, emptyDir: null, configMap: {name: c}}]
`,
  },
};

for (const [name, files] of Object.entries(FEATURE_FIXTURES)) {
  test(`renderer: ${name}: same as kubectl kustomize`, (t) => {
    const dir = fixture(files);
    const target = fs.existsSync(path.join(dir, "overlay")) ? path.join(dir, "overlay") : dir;
    assert.ok(render(target).length > 0);
    assertSameAsKubectl(t, target);
  });
}

test("renderer: results the cross-check relies on, without kubectl", () => {
  const objects = byId(render(fixture(FEATURE_FIXTURES["nested directories, namespace, labels with templates, images, replicas"]).concat("/overlay")));
  const app = objects["apps/v1/Deployment/fx/app"];
  assert.deepStrictEqual(app.metadata.labels, { a: "b", tier: "base", env: "test" });
  assert.deepStrictEqual(app.spec.template.metadata.labels, { a: "b", tier: "base" });
  assert.deepStrictEqual(app.spec.selector.matchLabels, { a: "b" });
  assert.equal(app.spec.replicas, 1);
  assert.equal(app.spec.template.spec.containers[0].image, "reg.io/app:2.0");
  assert.equal(app.spec.template.spec.initContainers[0].image, `reg.io/x/tool:9`);
  assert.ok(objects["v1/Namespace//fx"]);

  const patched = byId(render(fixture(FEATURE_FIXTURES["strategic merge patches: lists by merge key, null deletes, target"])));
  const spec = patched["apps/v1/Deployment//app"].spec.template.spec;
  assert.deepStrictEqual(spec.containers.map((c) => c.name), ["side", "main"]);
  assert.deepStrictEqual(spec.containers[1].env, [{ name: "C", value: "c" }, { name: "A", value: "a2" }, { name: "B", value: "b" }]);
  assert.deepStrictEqual(spec.volumes.find((v) => v.name === "v"), { name: "v", configMap: { name: "c" } });
  assert.equal(patched["apps/v1/Deployment//app"].metadata.labels, undefined);
  assert.equal(patched["v1/Service//app"].spec.type, "NodePort");
});

const REJECTED = {
  "commonLabels (not implemented)": { "kustomization.yaml": "resources: [a.yaml]\ncommonLabels: {x: y}\n" },
  "configMapGenerator (not implemented)": { "kustomization.yaml": "configMapGenerator: [{name: c, literals: [a=b]}]\n" },
  "JSON 6902 patches": {
    "kustomization.yaml": "resources: [a.yaml]\npatches:\n- target: {kind: ConfigMap, name: c}\n  patch: '[{\"op\": \"remove\", \"path\": \"/data\"}]'\n",
  },
  "$patch directives": {
    "kustomization.yaml": "resources: [a.yaml]\npatches:\n- patch: |\n    apiVersion: v1\n    kind: ConfigMap\n    metadata: {name: c}\n    $patch: delete\n",
  },
  "a patch of a ports list": {
    "kustomization.yaml": "resources: [a.yaml, b.yaml]\npatches:\n- patch: |\n    apiVersion: v1\n    kind: Service\n    metadata: {name: s}\n    spec:\n      ports: [{port: 81}]\n",
    "b.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{port: 80}]\n",
  },
  "labels with includeSelectors": { "kustomization.yaml": "resources: [a.yaml]\nlabels: [{pairs: {x: y}, includeSelectors: true}]\n" },
  "a kind of unknown scope": {
    "kustomization.yaml": "resources: [b.yaml]\n",
    "b.yaml": "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
  },
  "two resources with one id": { "kustomization.yaml": "resources: [a.yaml, a2.yaml]\n" },
  "a patch that matches nothing": {
    "kustomization.yaml": "resources: [a.yaml]\npatches:\n- patch: |\n    apiVersion: v1\n    kind: ConfigMap\n    metadata: {name: nope}\n",
  },
  "a missing resource": { "kustomization.yaml": "resources: [missing.yaml]\n" },
  "a directory without kustomization": { "kustomization.yaml": "resources: [sub]\n", "sub/a.yaml": "" },
};
const CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: v}\n";

for (const [name, files] of Object.entries(REJECTED)) {
  test(`renderer rejects ${name}`, () => {
    const dir = fixture({ "a.yaml": CONFIG_MAP, "a2.yaml": CONFIG_MAP, ...files });
    assert.throws(() => render(dir), KustomizeError);
  });
}

// ---------------------------------------------------------------------------
// Each rule catches what it is for: break one thing in the dev rendering.

function gatewayPod(objects) {
  return objects.find((o) => o.kind === "Deployment" && o.metadata.name === "assistants-gateway").spec.template;
}
function gatewayContainer(objects) {
  return gatewayPod(objects).spec.containers.find((c) => c.name === "gateway");
}
function gatewayConfig(objects, edit) {
  const cm = objects.find((o) => o.kind === "ConfigMap");
  const config = JSON.parse(cm.data["gateway.json"]);
  edit(config);
  cm.data["gateway.json"] = JSON.stringify(config);
}

const BREAKAGES = {
  "several replicas on SQLite": [(o) => { o.find((x) => x.metadata.name === "assistants-gateway" && x.kind === "Deployment").spec.replicas = 3; }, /3 replicas on SQLite/],
  "writable root filesystem": [(o) => { gatewayContainer(o).securityContext.readOnlyRootFilesystem = false; }, /readOnlyRootFilesystem/],
  "secret mounted with subPath": [(o) => {
    const mount = gatewayContainer(o).volumeMounts.find((m) => m.name === "api-keys");
    mount.subPath = "api-keys.json";
  }, /api-keys with subPath/],
  "privilege escalation": [(o) => { delete gatewayContainer(o).securityContext.allowPrivilegeEscalation; }, /allowPrivilegeEscalation/],
  "capabilities kept": [(o) => { gatewayContainer(o).securityContext.capabilities.drop = ["NET_RAW"]; }, /drop lacks ALL/],
  "root user": [(o) => { gatewayContainer(o).securityContext.runAsUser = 0; }, /runAsUser 0/],
  "no memory limit": [(o) => { delete gatewayContainer(o).resources.limits.memory; }, /resources.limits.memory/],
  "no cpu request on the sidecar": [(o) => { delete gatewayPod(o).spec.containers[1].resources.requests.cpu; }, /resources.requests.cpu/],
  "HTTP liveness probe": [(o) => { gatewayContainer(o).livenessProbe = { tcpSocket: { port: 50051 } }; }, /livenessProbe must be a gRPC probe/],
  "no preStop": [(o) => { delete gatewayContainer(o).lifecycle; }, /preStop/],
  "a latest image": [(o) => { gatewayContainer(o).image = "assistants-gateway:latest"; }, /no pinned tag/],
  "a Service selecting nothing": [(o) => { o.find((x) => x.kind === "Service").spec.selector = { nope: "x" }; }, /matches no pod template/],
  "a Service port nobody serves": [(o) => { o.find((x) => x.kind === "Service").spec.ports[0].targetPort = "grpcs"; }, /no selected container serves/],
  "a missing Secret key": [(o) => { delete o.find((x) => x.metadata.name === "openai-api-key").stringData["api-key"]; }, /has no key api-key/],
  "a missing ConfigMap": [(o) => { o.splice(o.findIndex((x) => x.kind === "ConfigMap"), 1); }, /no ConfigMap/],
  "a missing PVC": [(o) => { o.splice(o.findIndex((x) => x.kind === "PersistentVolumeClaim"), 1); }, /no PersistentVolumeClaim/],
  "two replicas on a ReadWriteOnce volume": [(o) => { o.find((x) => x.metadata.name === "assistants-gateway" && x.kind === "Deployment").spec.replicas = 2; }, /replicas 1 and strategy Recreate/],
  "an unannotated metrics port": [(o) => { delete gatewayPod(o).metadata.annotations["prometheus.io/scrape"]; }, /prometheus.io/],
  "no default deny": [(o) => { o.splice(o.findIndex((x) => x.metadata.name === "default-deny-ingress"), 1); }, /default-deny/],
  "a port no policy opens": [(o) => { o.find((x) => x.metadata.name === "assistants-gateway" && x.kind === "NetworkPolicy").spec.ingress.pop(); }, /port 9090 is opened by no NetworkPolicy/],
  "a policy selecting nothing": [(o) => { o.find((x) => x.metadata.name === "tool-workers").spec.podSelector.matchLabels = { x: "y" }; }, /podSelector matches no pod template/],
  "config listen on another port": [(o) => gatewayConfig(o, (c) => { c.listen = "0.0.0.0:8443"; }), /config listen/],
  "config metrics on another port": [(o) => gatewayConfig(o, (c) => { c.metrics.listen = "0.0.0.0:9091"; }), /metrics.listen/],
  "store off the volume": [(o) => gatewayConfig(o, (c) => { c.store.path = "/tmp/assistants.db"; }), /not on a PersistentVolumeClaim/],
  "grace longer than the pod's": [(o) => gatewayConfig(o, (c) => { c.shutdown.grace_ms = 60000; }), /terminationGracePeriodSeconds/],
  "an API keys file outside its Secret": [(o) => gatewayConfig(o, (c) => { c.auth.api_keys_file = "/etc/assistants/keys/other.json"; }), /has no key other.json/],
  "an API key stored in the clear": [(o) => {
    o.find((x) => x.metadata.name === "gateway-api-keys").stringData["api-keys.json"] =
      '{"keys": [{"project": "p", "name": "n", "key": "sk-plain"}]}';
  }, /is not \{"keys"/],
  "an allow-list rejecting the workers": [(o) => gatewayConfig(o, (c) => { c.workers.allowlist = "10.0.0.0/8"; }), /not admitted by the gateway's allow-list/],
  "a worker advertising another name": [(o) => {
    const env = o.find((x) => x.metadata.name === "stock-price-worker" && x.kind === "Deployment").spec.template.spec.containers[0].env;
    env.find((e) => e.name === "WORKER_ADVERTISE").value = "$(POD_NAME).elsewhere.svc.cluster.local:50061";
  }, /headless Service/],
  "a worker pointed at no Service": [(o) => {
    const env = o.find((x) => x.metadata.name === "calculator-worker" && x.kind === "Deployment").spec.template.spec.containers[0].env;
    env.find((e) => e.name === "ASSISTANTS_GATEWAY").value = "gateway:50051";
  }, /ASSISTANTS_GATEWAY/],
};

// The same, in the replicated rendering (several gateways on PostgreSQL).
function gatewayDeployment(objects) {
  return objects.find((o) => o.kind === "Deployment" && o.metadata.name === "assistants-gateway");
}
function gatewayEnv(objects, name) {
  return gatewayContainer(objects).env.find((e) => e.name === name);
}
function operatorSecretsOf(objects, edit) {
  const ns = objects.find((o) => o.kind === "Namespace");
  const names = ns.metadata.annotations[OPERATOR_SECRETS_ANNOTATION].split(/[\s,]+/);
  ns.metadata.annotations[OPERATOR_SECRETS_ANNOTATION] = edit(names).join(", ");
}
const POSTGRES_URL = "postgresql://assistants:hunter2@db.example:5432/assistants";

const REPLICATED_BREAKAGES = {
  "a Postgres URL in the ConfigMap": [(o) => gatewayConfig(o, (c) => { c.store.postgres_url = POSTGRES_URL; }), /store.postgres_url is a secret/],
  "a Postgres URL as a literal env value": [(o) => {
    const e = gatewayEnv(o, "ASSISTANTS_STORE_POSTGRES_URL");
    delete e.valueFrom;
    e.value = POSTGRES_URL;
  }, /ASSISTANTS_STORE_POSTGRES_URL is not from a Secret/],
  "a Postgres URL on the command line": [(o) => { gatewayContainer(o).args.push(`--store_postgres_url=${POSTGRES_URL}`); }, /--store_postgres_url puts the database password/],
  "a replicated gateway that lost its PostgreSQL URL": [(o) => {
    const c = gatewayContainer(o);
    c.env = c.env.filter((e) => e.name !== "ASSISTANTS_STORE_POSTGRES_URL");
  }, /3 replicas on SQLite/],
  "a PostgreSQL gateway with a PersistentVolumeClaim": [(o) => {
    o.push({ apiVersion: "v1", kind: "PersistentVolumeClaim", metadata: { name: "data", namespace: "assistants" },
      spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } } });
    gatewayPod(o).spec.volumes.push({ name: "data", persistentVolumeClaim: { claimName: "data" } });
    gatewayContainer(o).volumeMounts.push({ name: "data", mountPath: "/var/lib/assistants" });
  }, /the PostgreSQL store keeps no state in the pod/],
  "store.path beside the PostgreSQL store": [(o) => gatewayConfig(o, (c) => { c.store.path = "/tmp/assistants.db"; }), /ignored with the PostgreSQL store/],
  "replicas sharing one replica id": [(o) => {
    const e = gatewayEnv(o, "ASSISTANTS_CLUSTER_REPLICA_ID");
    delete e.valueFrom;
    e.value = "gateway";
  }, /ASSISTANTS_CLUSTER_REPLICA_ID is the same in every pod/],
  "a replica id in the ConfigMap": [(o) => gatewayConfig(o, (c) => { c.cluster.replica_id = "gateway"; }), /cluster.replica_id in the ConfigMap/],
  "a replicated gateway on strategy Recreate": [(o) => { gatewayDeployment(o).spec.strategy = { type: "Recreate" }; }, /strategy RollingUpdate with maxUnavailable 0/],
  "a replicated gateway rolling out with maxUnavailable 1": [(o) => {
    gatewayDeployment(o).spec.strategy.rollingUpdate = { maxUnavailable: 1, maxSurge: 0 };
  }, /strategy RollingUpdate with maxUnavailable 0 and maxSurge >= 1/],
  "a replicated gateway without a PodDisruptionBudget": [(o) => {
    o.splice(o.findIndex((x) => x.kind === "PodDisruptionBudget"), 1);
  }, /no PodDisruptionBudget selecting them/],
  "a replicated gateway whose PodDisruptionBudget blocks every drain": [(o) => {
    const pdb = o.find((x) => x.kind === "PodDisruptionBudget");
    delete pdb.spec.maxUnavailable;
    pdb.spec.minAvailable = "100%";
  }, /allows no eviction of its 3 replicas/],
  "a replicated gateway whose PodDisruptionBudget lets a drain take every replica": [(o) => {
    o.find((x) => x.kind === "PodDisruptionBudget").spec.maxUnavailable = 3;
  }, /lets a drain evict all 3 replicas/],
  "replicas not spread over nodes": [(o) => { delete gatewayPod(o).spec.topologySpreadConstraints; }, /not spread over nodes/],
  "replicas spread by zone only": [(o) => {
    gatewayPod(o).spec.topologySpreadConstraints = gatewayPod(o).spec.topologySpreadConstraints
      .filter((c) => c.topologyKey !== "kubernetes.io/hostname");
  }, /not spread over nodes/],
  "a Secret reference the overlay does not declare": [(o) => operatorSecretsOf(o, (names) => names.filter((n) => n !== "assistants-postgres")),
    /env ASSISTANTS_STORE_POSTGRES_URL: no Secret assistants-postgres/],
  "a declared operator Secret nobody references": [(o) => operatorSecretsOf(o, (names) => [...names, "postgres-admin"]),
    /lists Secret postgres-admin, which no pod references/],
  "a declared operator Secret the overlay also defines": [(o) => {
    o.push({ apiVersion: "v1", kind: "Secret", metadata: { name: "assistants-postgres", namespace: "assistants" },
      stringData: { url: POSTGRES_URL } });
  }, /lists Secret assistants-postgres, which the rendering also defines/],
};

function assertRulesCatch(overlay, breakIt, expected) {
  const objects = render(path.join(K8S, "overlays", overlay));
  assert.deepStrictEqual(ruleProblems(objects), [], `overlay ${overlay} is fine before the breakage`);
  breakIt(objects);
  const problems = ruleProblems(objects);
  assert.ok(problems.some((p) => expected.test(p)), `expected ${expected} among ${JSON.stringify(problems, null, 1)}`);
}

for (const [name, [breakIt, expected]] of Object.entries(BREAKAGES)) {
  test(`rules catch ${name}`, () => assertRulesCatch("dev", breakIt, expected));
}
for (const [name, [breakIt, expected]] of Object.entries(REPLICATED_BREAKAGES)) {
  test(`rules catch ${name}`, () => assertRulesCatch("replicated", breakIt, expected));
}

test("schema validation catches a wrong type and a wrong kind", async () => {
  const objects = render(path.join(K8S, "overlays/dev"));
  gatewayContainer(objects).lifecycle.preStop.sleep.seconds = "5";
  objects.push({ apiVersion: "v1", kind: "Pod2", metadata: { name: "x" } });
  const problems = await schemaProblems(objects);
  assert.ok(problems.some((p) => /sleep\/seconds must be integer/.test(p)), JSON.stringify(problems));
  assert.ok(problems.some((p) => /no schema for kind Pod2/.test(p)), JSON.stringify(problems));
});

// ---------------------------------------------------------------------------
// The Dockerfile, statically.

const dockerfile = parseDockerfile(fs.readFileSync(path.join(ROOT, "Dockerfile"), "utf8"));
const stage = (name) => dockerfile.find((s) => s.name === name);
const ops = (s, op) => s.instructions.filter((i) => i.op === op).map((i) => i.args);

// The binaries the builder stage builds and copies out.
function builtBinaries() {
  const run = ops(stage("builder"), "RUN").find((r) => r.includes("--target"));
  const targets = /--target\s+([^&]+?)\s*&&/.exec(run)[1].trim().split(/\s+/);
  const copied = /for b in ([^;]+);/.exec(run)[1].trim().split(/\s+/);
  assert.deepStrictEqual(copied, targets, "the builder copies out exactly what it builds");
  return targets;
}

test("Dockerfile: multi-stage on Debian 12, runtime stages slim", () => {
  assert.deepStrictEqual(dockerfile.map((s) => s.name), ["builder", "python-worker", "gateway"]);
  assert.match(stage("builder").from, /^debian:12(@sha256:[0-9a-f]{64})?$/);
  for (const name of ["python-worker", "gateway"]) {
    assert.match(stage(name).from, /^debian:12-slim(@sha256:[0-9a-f]{64})?$/, name);
  }
});

test("Dockerfile: runtime stages run as a numeric non-root user and copy only build outputs", () => {
  for (const name of ["python-worker", "gateway"]) {
    const users = ops(stage(name), "USER");
    assert.equal(users.length, 1, name);
    const [uid, gid] = users[0].split(":");
    assert.match(uid, /^[1-9]\d*$/, `${name}: USER must be a numeric non-root uid`);
    assert.match(gid ?? "1", /^[1-9]\d*$/, `${name}: group must be numeric non-root`);
    for (const copy of ops(stage(name), "COPY")) {
      assert.match(copy, /^--from=builder \/out\//, `${name}: copies only from the builder's /out`);
    }
    assert.ok(ops(stage(name), "RUN").every((r) => r.includes("rm -rf /var/lib/apt/lists/*")), `${name}: apt lists removed`);
  }
});

test("Dockerfile: the scripts and sources it uses exist", () => {
  for (const s of dockerfile) {
    for (const { op, args } of s.instructions) {
      if (op === "COPY" && !args.startsWith("--from=")) {
        const sources = args.split(/\s+/).slice(0, -1);
        for (const src of sources) assert.ok(fs.existsSync(path.join(ROOT, src)), `COPY source ${src}`);
      }
      if (op === "RUN") {
        for (const m of args.matchAll(/(?:\.\/)?((?:scripts|tool_workers)\/[\w./-]+)/g)) {
          assert.ok(fs.existsSync(path.join(ROOT, m[1])), `${s.name}: RUN uses ${m[1]}`);
        }
      }
    }
  }
  const cmake = fs.readFileSync(path.join(ROOT, "CMakeLists.txt"), "utf8");
  assert.match(cmake, /option\(ASSISTANTS_BUILD_TESTS/, "the builder turns tests off with ASSISTANTS_BUILD_TESTS");
  for (const target of builtBinaries()) {
    const found = spawnSync("grep", ["-rqE", `add_executable\\(${target}\\b`, "--include=CMakeLists.txt", ROOT]).status === 0;
    assert.ok(found, `CMake has no executable ${target}`);
  }
});

test("Dockerfile: entrypoints and every command the manifests run are in the images", () => {
  const bins = builtBinaries().map((b) => `/usr/local/bin/${b}`);
  assert.deepStrictEqual(ops(stage("gateway"), "ENTRYPOINT"), ['["/usr/local/bin/assistants-gateway"]']);
  assert.deepStrictEqual(ops(stage("python-worker"), "ENTRYPOINT"),
    ['["/usr/bin/python3", "/opt/assistants/python/calculator_worker.py"]']);
  const pythonCopied = ops(stage("builder"), "RUN").find((r) => r.includes("python-stubs.sh"));
  assert.match(pythonCopied, /calculator_worker\.py/);
  for (const name of Object.keys(OVERLAYS)) {
    for (const o of render(path.join(K8S, "overlays", name)).filter((x) => x.kind === "Deployment")) {
      for (const c of o.spec.template.spec.containers) {
        const image = c.image.split("/").at(-1).split(/[:@]/)[0];
        if (image === "assistants-gateway" && c.command) assert.ok(bins.includes(c.command[0]), `${name}: ${c.command[0]}`);
        assert.ok(["assistants-gateway", "assistants-python-worker"].includes(image), `${name}: image ${c.image}`);
      }
    }
  }
  const ignore = fs.readFileSync(path.join(ROOT, ".dockerignore"), "utf8").split("\n");
  for (const entry of [".git", "build", "build-*", "**/node_modules"]) assert.ok(ignore.includes(entry), `.dockerignore: ${entry}`);
});

test("Dockerfile: the python-worker stage has the Python gRPC runtime", () => {
  const packages = aptPackages(stage("python-worker"));
  for (const p of ["python3", "python3-grpcio", "python3-protobuf"]) assert.ok(packages.includes(p), p);
});

// The Debian package owning a library file, trying the path as ldd gave it,
// its real path, and its twin across the merged /usr (dpkg records either).
function packageOwning(file) {
  const real = fs.realpathSync(file);
  const candidates = [file, real];
  for (const f of [file, real]) {
    candidates.push(f.startsWith("/usr/") ? f.slice(4) : `/usr${f}`);
  }
  for (const candidate of candidates) {
    const out = spawnSync("dpkg", ["-S", candidate], { encoding: "utf8" });
    if (out.status === 0) return out.stdout.split(":")[0];
  }
  return null;
}

// Needs the built binaries (K8S_BINARIES, colon-separated) and dpkg.
test("Dockerfile: the gateway stage installs a package for every library the binaries load", (t) => {
  const binaries = (process.env.K8S_BINARIES ?? "").split(":").filter(Boolean);
  if (binaries.length === 0 || spawnSync("dpkg", ["--version"]).status !== 0) {
    t.skip("K8S_BINARIES unset or no dpkg: library check skipped");
    return;
  }
  assert.deepStrictEqual(binaries.map((b) => path.basename(b)).sort(), [...builtBinaries()].sort());
  // Packages every debian:12-slim image has.
  const installed = new Set([...aptPackages(stage("gateway")), "libc6", "libstdc++6", "libgcc-s1"]);
  // Sanitizer runtimes appear only in the test suite's ASan build.
  const sanitizer = /^lib(asan|ubsan|lsan|tsan)\.so/;
  const missing = new Set();
  for (const binary of binaries) {
    const needed = [...execFileSync("readelf", ["-d", binary], { encoding: "utf8" }).matchAll(/\(NEEDED\).*\[(.+)\]/g)]
      .map((m) => m[1]).filter((lib) => !sanitizer.test(lib));
    const resolved = Object.fromEntries([...execFileSync("ldd", [binary], { encoding: "utf8" })
      .matchAll(/^\s*(\S+) => (\S+)/gm)].map((m) => [m[1], m[2]]));
    for (const lib of needed) {
      assert.ok(resolved[lib], `${binary}: ldd does not resolve ${lib}`);
      const owner = packageOwning(resolved[lib]);
      assert.ok(owner, `${binary}: no Debian package owns ${resolved[lib]}`);
      if (!installed.has(owner)) missing.add(`${owner} (${lib}, ${path.basename(binary)})`);
    }
  }
  assert.deepStrictEqual([...missing], [], "add these runtime packages to the Dockerfile's gateway stage");
});
