// Checks on a rendered set of objects: the Kubernetes schemas
// (kubernetes-models) and the project's own rules (hardened containers,
// probes, references that resolve, selectors that select, network
// policies that cover every port, the gateway's config agreeing with its
// pod, its store agreeing with its replica count). Each check returns a
// list of problems ("" list = fine).
//
// Secrets the operator creates by hand (credentials, never in git) are
// declared where they must exist: the overlay's Namespace carries the
// annotation OPERATOR_SECRETS_ANNOTATION, a list of Secret names. A
// reference may name such a Secret without the rendering defining it; the
// list is checked too (nothing stale, nothing also defined), and
// tests/k8s checks k8s/README.md documents creating each one with the keys
// the manifests read. The declaration travels with the manifests, so the
// rules need no side input and a reader of the overlay sees what to create.

// Kubernetes-models modules by apiVersion; a kind outside them is a problem.
const MODEL_MODULES = {
  "v1": "kubernetes-models/v1",
  "apps/v1": "kubernetes-models/apps/v1",
  "policy/v1": "kubernetes-models/policy/v1",
  "networking.k8s.io/v1": "kubernetes-models/networking.k8s.io/v1",
};

// Validates every object against its Kubernetes schema.
export async function schemaProblems(objects) {
  const problems = [];
  for (const obj of objects) {
    const id = `${obj.kind}/${obj.metadata?.name}`;
    const module = MODEL_MODULES[obj.apiVersion];
    if (!module) {
      problems.push(`${id}: apiVersion ${obj.apiVersion} has no schema here`);
      continue;
    }
    const Model = (await import(module))[obj.kind];
    if (typeof Model !== "function") {
      problems.push(`${id}: no schema for kind ${obj.kind} in ${obj.apiVersion}`);
      continue;
    }
    try {
      new Model(obj).validate();
    } catch (err) {
      problems.push(`${id}: schema: ${err.message}`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------

function podTemplates(objects) {
  return objects
    .filter((o) => ["Deployment", "StatefulSet", "DaemonSet", "Job"].includes(o.kind))
    .map((o) => ({ owner: o, ns: o.metadata.namespace ?? "", meta: o.spec.template.metadata ?? {},
      spec: o.spec.template.spec }));
}

function allContainers(spec) {
  return [...(spec.initContainers ?? []), ...(spec.containers ?? [])];
}

function selects(matchLabels, labels) {
  return Object.entries(matchLabels ?? {}).every(([k, v]) => labels?.[k] === v);
}

function find(objects, kind, ns, name) {
  return objects.find((o) => o.kind === kind && (o.metadata.namespace ?? "") === ns &&
    o.metadata.name === name);
}

function dataKeys(obj) {
  return new Set([...Object.keys(obj.data ?? {}), ...Object.keys(obj.stringData ?? {}),
    ...Object.keys(obj.binaryData ?? {})]);
}

function portOf(listen) {
  const colon = String(listen).lastIndexOf(":");
  return colon < 0 ? NaN : Number(String(listen).slice(colon + 1));
}

// The annotation on a Namespace naming the Secrets the operator creates in
// it (comma- or space-separated).
export const OPERATOR_SECRETS_ANNOTATION = "assistants-gateway/operator-secrets";

// The gateway's environment variables for the PostgreSQL store's URL (a
// secret: it carries the password) and the replica's id in run leases.
const POSTGRES_URL_ENV = "ASSISTANTS_STORE_POSTGRES_URL";
const REPLICA_ID_ENV = "ASSISTANTS_CLUSTER_REPLICA_ID";
const POSTGRES_URL = /postgres(ql)?:\/\//i;
const HOSTNAME_TOPOLOGY = "kubernetes.io/hostname";

// Namespace name -> Set of operator-provided Secret names.
function operatorSecrets(objects) {
  const out = new Map();
  for (const ns of objects.filter((o) => o.kind === "Namespace")) {
    const list = ns.metadata.annotations?.[OPERATOR_SECRETS_ANNOTATION] ?? "";
    out.set(ns.metadata.name, new Set(list.split(/[\s,]+/).filter(Boolean)));
  }
  return out;
}

// An IntOrString count out of `total`: an integer as is, "N%" of total
// rounded up or down (Kubernetes rounds a Deployment's maxSurge up, its
// maxUnavailable down, and both of a PodDisruptionBudget's fields up).
function scaled(value, total, roundUp) {
  if (typeof value === "number") return value;
  const percent = /^(\d+)%$/.exec(String(value));
  if (!percent) return NaN;
  const exact = (Number(percent[1]) * total) / 100;
  return roundUp ? Math.ceil(exact) : Math.floor(exact);
}

function globMatch(glob, text) {
  const re = new RegExp(`^${glob.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);
  return re.test(text);
}

// The project's rules over one rendering (an overlay's objects): a list of
// problems, empty when every rule holds. Secrets a reference may name
// without the rendering defining them come from the Namespace annotation
// OPERATOR_SECRETS_ANNOTATION.
export function ruleProblems(objects) {
  const problems = [];
  const templates = podTemplates(objects);
  const namespaces = new Set(objects.map((o) => o.metadata.namespace).filter(Boolean));
  const declared = operatorSecrets(objects);
  const external = (ns, name) => declared.get(ns)?.has(name) === true;

  for (const t of templates) {
    const id = `${t.owner.kind}/${t.owner.metadata.name}`;
    const podSc = t.spec.securityContext ?? {};
    if (!selects(t.owner.spec.selector?.matchLabels, t.meta.labels)) {
      problems.push(`${id}: selector does not select its own pod template`);
    }
    if (t.spec.automountServiceAccountToken !== false) {
      problems.push(`${id}: automountServiceAccountToken must be false (no API access needed)`);
    }
    if (podSc.runAsUser === 0) problems.push(`${id}: runAsUser 0`);
    const volumes = new Map((t.spec.volumes ?? []).map((v) => [v.name, v]));

    for (const c of allContainers(t.spec)) {
      const cid = `${id} container ${c.name}`;
      const sc = c.securityContext ?? {};
      for (const kind of ["requests", "limits"]) {
        for (const res of ["cpu", "memory"]) {
          if (c.resources?.[kind]?.[res] === undefined) problems.push(`${cid}: no resources.${kind}.${res}`);
        }
      }
      if (sc.runAsNonRoot !== true && !(podSc.runAsNonRoot === true && sc.runAsNonRoot === undefined)) {
        problems.push(`${cid}: runAsNonRoot is not true`);
      }
      if (sc.runAsUser === 0) problems.push(`${cid}: runAsUser 0`);
      if (sc.readOnlyRootFilesystem !== true) problems.push(`${cid}: readOnlyRootFilesystem is not true`);
      if (sc.allowPrivilegeEscalation !== false) problems.push(`${cid}: allowPrivilegeEscalation is not false`);
      if (!(sc.capabilities?.drop ?? []).includes("ALL")) problems.push(`${cid}: capabilities.drop lacks ALL`);
      if (!c.image || /:latest$/.test(c.image) || (!c.image.includes("@") && !/:[^/]+$/.test(c.image))) {
        problems.push(`${cid}: image ${c.image} has no pinned tag or digest`);
      }
      if ((c.ports ?? []).length > 0 && (!c.readinessProbe || !c.livenessProbe)) {
        problems.push(`${cid}: serves ports but lacks a readiness or liveness probe`);
      }
      for (const m of c.volumeMounts ?? []) {
        if (!volumes.has(m.name)) problems.push(`${cid}: mounts unknown volume ${m.name}`);
        // A subPath mount is never refreshed by the kubelet: a rotated key or
        // certificate would not reach the running gateway.
        const mounted = volumes.get(m.name);
        if (m.subPath !== undefined && (mounted?.secret || mounted?.configMap)) {
          problems.push(`${cid}: mounts ${m.name} with subPath, so updates of it never reach the pod`);
        }
      }
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.secretKeyRef ?? e.valueFrom?.configMapKeyRef;
        if (!ref) continue;
        const kind = e.valueFrom.secretKeyRef ? "Secret" : "ConfigMap";
        const target = find(objects, kind, t.ns, ref.name);
        if (target) {
          if (!dataKeys(target).has(ref.key)) problems.push(`${cid}: env ${e.name}: ${kind} ${ref.name} has no key ${ref.key}`);
        } else if (!(kind === "Secret" && external(t.ns, ref.name)) && ref.optional !== true) {
          problems.push(`${cid}: env ${e.name}: no ${kind} ${ref.name}`);
        }
      }
      for (const e of c.env ?? []) {
        if (typeof e.value === "string" && POSTGRES_URL.test(e.value)) {
          problems.push(`${cid}: env ${e.name} holds a PostgreSQL URL, ` +
            "which carries the database password: take it from a Secret");
        }
      }
    }

    for (const v of volumes.values()) {
      const vid = `${id} volume ${v.name}`;
      if (v.configMap && !find(objects, "ConfigMap", t.ns, v.configMap.name) && v.configMap.optional !== true) {
        problems.push(`${vid}: no ConfigMap ${v.configMap.name}`);
      }
      if (v.secret && !find(objects, "Secret", t.ns, v.secret.secretName) &&
          !external(t.ns, v.secret.secretName) && v.secret.optional !== true) {
        problems.push(`${vid}: no Secret ${v.secret.secretName}`);
      }
      if (v.persistentVolumeClaim) {
        const pvc = find(objects, "PersistentVolumeClaim", t.ns, v.persistentVolumeClaim.claimName);
        if (!pvc) {
          problems.push(`${vid}: no PersistentVolumeClaim ${v.persistentVolumeClaim.claimName}`);
        } else if ((pvc.spec.accessModes ?? []).includes("ReadWriteOnce") && t.owner.kind === "Deployment" &&
            ((t.owner.spec.replicas ?? 1) > 1 || t.owner.spec.strategy?.type !== "Recreate")) {
          problems.push(`${id}: mounts ReadWriteOnce ${pvc.metadata.name}, so needs replicas 1 and strategy Recreate`);
        }
      }
    }

    // Metrics: a container port named metrics is annotated for scraping.
    for (const c of allContainers(t.spec)) {
      const metrics = (c.ports ?? []).find((p) => p.name === "metrics");
      if (!metrics) continue;
      const a = t.meta.annotations ?? {};
      if (a["prometheus.io/scrape"] !== "true" || a["prometheus.io/port"] !== String(metrics.containerPort) ||
          !a["prometheus.io/path"]) {
        problems.push(`${id}: metrics port ${metrics.containerPort} lacks prometheus.io/{scrape,port,path} annotations`);
      }
    }
  }

  // Services select a pod template, and their target ports exist on it.
  for (const svc of objects.filter((o) => o.kind === "Service")) {
    const id = `Service/${svc.metadata.name}`;
    const ns = svc.metadata.namespace ?? "";
    const pods = templates.filter((t) => t.ns === ns && selects(svc.spec.selector, t.meta.labels));
    if (!svc.spec.selector || pods.length === 0) {
      problems.push(`${id}: selector matches no pod template`);
      continue;
    }
    for (const port of svc.spec.ports ?? []) {
      const target = port.targetPort ?? port.port;
      const found = pods.some((t) => allContainers(t.spec).some((c) => (c.ports ?? []).some(
        (p) => p.name === target || p.containerPort === target)));
      if (!found) problems.push(`${id}: port ${port.name ?? port.port} targets ${target}, which no selected container serves`);
    }
  }

  // Network policies: each namespace with pods denies ingress by default;
  // every selector selects something; every declared container port is
  // opened by some policy (else it is unreachable) and every opened port is
  // served by the selected pods.
  const policies = objects.filter((o) => o.kind === "NetworkPolicy");
  for (const ns of new Set(templates.map((t) => t.ns))) {
    const denyAll = policies.some((p) => (p.metadata.namespace ?? "") === ns &&
      Object.keys(p.spec.podSelector ?? {}).length === 0 && (p.spec.policyTypes ?? []).includes("Ingress") &&
      (p.spec.ingress ?? []).length === 0);
    if (!denyAll) problems.push(`namespace ${ns || "(none)"}: no default-deny ingress NetworkPolicy`);
  }
  for (const p of policies) {
    const id = `NetworkPolicy/${p.metadata.name}`;
    const ns = p.metadata.namespace ?? "";
    const matchLabels = p.spec.podSelector?.matchLabels;
    if (p.spec.podSelector?.matchExpressions) problems.push(`${id}: matchExpressions are not checked; use matchLabels`);
    if (!matchLabels || Object.keys(matchLabels).length === 0) continue;
    const pods = templates.filter((t) => t.ns === ns && selects(matchLabels, t.meta.labels));
    if (pods.length === 0) problems.push(`${id}: podSelector matches no pod template`);
    for (const rule of p.spec.ingress ?? []) {
      for (const peer of rule.from ?? []) {
        // A peer naming one of our components must exist; opt-in labels
        // (assistants-gateway/client) select pods outside the rendering.
        if (peer.podSelector?.matchLabels?.["app.kubernetes.io/name"] && !peer.namespaceSelector) {
          const peers = templates.filter((t) => t.ns === ns && selects(peer.podSelector.matchLabels, t.meta.labels));
          if (peers.length === 0) problems.push(`${id}: from.podSelector ${JSON.stringify(peer.podSelector)} matches no pod template`);
        }
      }
      for (const port of rule.ports ?? []) {
        const served = pods.some((t) => allContainers(t.spec).some((c) => (c.ports ?? []).some(
          (cp) => cp.containerPort === port.port || cp.name === port.port)));
        if (!served) problems.push(`${id}: opens port ${port.port}, which the selected pods do not serve`);
      }
    }
  }
  for (const t of templates) {
    for (const c of allContainers(t.spec)) {
      for (const cp of c.ports ?? []) {
        const opened = policies.some((p) => (p.metadata.namespace ?? "") === t.ns &&
          Object.keys(p.spec.podSelector?.matchLabels ?? {}).length > 0 &&
          selects(p.spec.podSelector.matchLabels, t.meta.labels) &&
          (p.spec.ingress ?? []).some((r) => (r.ports ?? []).some((pp) => pp.port === cp.containerPort || pp.port === cp.name)));
        if (!opened) problems.push(`${t.owner.kind}/${t.owner.metadata.name}: port ${cp.containerPort} is opened by no NetworkPolicy`);
      }
    }
  }

  // Operator-provided Secrets: each declared one is referenced, and not
  // also defined by the rendering (which would overwrite the operator's).
  for (const [ns, names] of declared) {
    const referenced = new Set(templates.filter((t) => t.ns === ns).flatMap((t) => [
      ...allContainers(t.spec).flatMap((c) => (c.env ?? []).map((e) => e.valueFrom?.secretKeyRef?.name)),
      ...(t.spec.volumes ?? []).map((v) => v.secret?.secretName),
    ]).filter(Boolean));
    for (const name of names) {
      if (find(objects, "Secret", ns, name)) {
        problems.push(`Namespace/${ns}: ${OPERATOR_SECRETS_ANNOTATION} lists Secret ${name}, which the rendering also defines`);
      }
      if (!referenced.has(name)) {
        problems.push(`Namespace/${ns}: ${OPERATOR_SECRETS_ANNOTATION} lists Secret ${name}, which no pod references`);
      }
    }
  }

  // A PostgreSQL URL carries its password: never in a ConfigMap.
  for (const cm of objects.filter((o) => o.kind === "ConfigMap")) {
    for (const [key, value] of Object.entries(cm.data ?? {})) {
      if (POSTGRES_URL.test(String(value))) {
        problems.push(`ConfigMap/${cm.metadata.name}: ${key} holds a PostgreSQL URL, ` +
          "which carries the database password: put it in a Secret");
      }
    }
  }

  problems.push(...gatewayProblems(objects, templates, external));
  problems.push(...workerProblems(objects, templates));
  if (namespaces.size > 1) problems.push(`objects span several namespaces: ${[...namespaces].join(", ")}`);
  return problems;
}

// The mounted file at `file` in container `c` of template `t`: the volume
// and the key inside it, or null.
function mountedFile(t, c, file) {
  for (const m of c.volumeMounts ?? []) {
    const dir = m.mountPath.replace(/\/$/, "");
    if (!file.startsWith(`${dir}/`)) continue;
    const volume = (t.spec.volumes ?? []).find((v) => v.name === m.name);
    return { volume, key: file.slice(dir.length + 1) };
  }
  return null;
}

// The gateway: probes, preStop, its config file agreeing with the pod, its
// store agreeing with its replica count.
function gatewayProblems(objects, templates, external) {
  const problems = [];
  const gateways = templates.filter((t) => t.meta.labels?.["app.kubernetes.io/component"] === "gateway");
  if (gateways.length === 0) return problems;
  for (const t of gateways) {
    const id = `${t.owner.kind}/${t.owner.metadata.name}`;
    const c = (t.spec.containers ?? []).find((x) => x.name === "gateway");
    if (!c) {
      problems.push(`${id}: no container named gateway`);
      continue;
    }
    const grpc = (c.ports ?? []).find((p) => p.name === "grpc");
    for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
      if (c[probe]?.grpc?.port !== grpc?.containerPort) {
        problems.push(`${id}: ${probe} must be a gRPC probe on the grpc port`);
      }
    }
    const preStop = c.lifecycle?.preStop?.sleep?.seconds;
    if (!(preStop > 0)) problems.push(`${id}: no preStop sleep before the drain`);

    const configArg = (c.args ?? []).find((a) => a.startsWith("--config="));
    if (!configArg) {
      problems.push(`${id}: gateway has no --config=FILE argument`);
      continue;
    }
    const configFile = mountedFile(t, c, configArg.slice("--config=".length));
    const cm = configFile?.volume?.configMap && find(objects, "ConfigMap", t.ns, configFile.volume.configMap.name);
    if (!cm || cm.data?.[configFile.key] === undefined) {
      problems.push(`${id}: ${configArg} is not a key of a mounted ConfigMap`);
      continue;
    }
    let config;
    try {
      config = JSON.parse(cm.data[configFile.key]);
    } catch (err) {
      problems.push(`ConfigMap/${cm.metadata.name}: ${configFile.key} is not JSON: ${err.message}`);
      continue;
    }
    if (portOf(config.listen) !== grpc?.containerPort) problems.push(`${id}: config listen ${config.listen} is not the grpc port`);
    const metricsPort = (c.ports ?? []).find((p) => p.name === "metrics")?.containerPort;
    if (portOf(config.metrics?.listen) !== metricsPort) {
      problems.push(`${id}: config metrics.listen ${config.metrics?.listen} is not the metrics port`);
    }
    problems.push(...storeProblems(objects, t, c, id, cm, config));
    const grace = (config.shutdown?.grace_ms ?? 5000) / 1000 + (preStop ?? 0);
    if (grace >= (t.spec.terminationGracePeriodSeconds ?? 30)) {
      problems.push(`${id}: preStop + shutdown.grace_ms (${grace} s) do not fit terminationGracePeriodSeconds`);
    }
    const secretFiles = [config.auth?.api_keys_file, config.workers?.token_file, config.tls?.cert_file,
      config.tls?.key_file, config.tls?.client_ca_file].filter(Boolean);
    for (const file of secretFiles) {
      const mounted = mountedFile(t, c, file);
      if (!mounted?.volume?.secret) {
        problems.push(`${id}: ${file} is not in a mounted Secret`);
        continue;
      }
      const secret = find(objects, "Secret", t.ns, mounted.volume.secret.secretName);
      if (secret && !dataKeys(secret).has(mounted.key)) {
        problems.push(`${id}: Secret ${secret.metadata.name} has no key ${mounted.key} for ${file}`);
      } else if (secret && file === config.auth?.api_keys_file && secret.stringData?.[mounted.key] !== undefined) {
        // Keys are stored as SHA-256 hex, never in the clear.
        let keys = null;
        try {
          keys = JSON.parse(secret.stringData[mounted.key]).keys;
        } catch {
          // Reported below.
        }
        if (!Array.isArray(keys) || keys.length === 0 ||
            !keys.every((k) => k.project && k.name && /^[0-9a-f]{64}$/.test(k.sha256 ?? ""))) {
          problems.push(`${id}: ${file} is not {"keys": [{"project", "name", "sha256": hex}]}`);
        }
      } else if (!secret && !external(t.ns, mounted.volume.secret.secretName)) {
        problems.push(`${id}: no Secret ${mounted.volume.secret.secretName} for ${file}`);
      }
    }
  }
  return problems;
}

// The gateway's store. PostgreSQL when its URL is given: only as env
// POSTGRES_URL_ENV from a Secret, with no volume and no store.path, and
// each replica named apart. Else SQLite: store.path on a
// PersistentVolumeClaim, and one replica. Several replicas (PostgreSQL
// only) also need a rollout and a disruption budget that keep most of
// them serving, and spreading over nodes.
function storeProblems(objects, t, c, id, cm, config) {
  const problems = [];
  const replicas = t.owner.kind === "Deployment" ? (t.owner.spec.replicas ?? 1) : 1;
  const env = (name) => (c.env ?? []).find((e) => e.name === name);
  const urlEnv = env(POSTGRES_URL_ENV);
  const urlFlag = (c.args ?? []).some((a) => a.startsWith("--store_postgres_url"));
  const urlInFile = config.store?.postgres_url !== undefined;
  if (urlInFile) {
    problems.push(`ConfigMap/${cm.metadata.name}: store.postgres_url is a secret (it carries the database ` +
      `password): give it as env ${POSTGRES_URL_ENV} from a Secret, never in the ConfigMap`);
  }
  if (urlFlag) {
    problems.push(`${id}: --store_postgres_url puts the database password in the pod spec: ` +
      `give it as env ${POSTGRES_URL_ENV} from a Secret`);
  }
  if (urlEnv && !urlEnv.valueFrom?.secretKeyRef) {
    problems.push(`${id}: env ${POSTGRES_URL_ENV} is not from a Secret (valueFrom.secretKeyRef): the URL carries the database password`);
  }
  const postgres = Boolean(urlEnv || urlFlag || urlInFile);

  if (postgres) {
    for (const v of (t.spec.volumes ?? []).filter((x) => x.persistentVolumeClaim)) {
      problems.push(`${id}: volume ${v.name} is PersistentVolumeClaim ${v.persistentVolumeClaim.claimName}, but the ` +
        "PostgreSQL store keeps no state in the pod: drop it (a ReadWriteOnce one also pins the gateway to one replica)");
    }
    if (config.store?.path !== undefined) {
      problems.push(`${id}: store.path ${config.store.path} is ignored with the PostgreSQL store: drop it from the config`);
    }
    // Run leases name their owner by replica id: replicas sharing one
    // cannot tell their leases apart. The default (hostname, pid, random)
    // and the pod's own name or uid are unique; one ConfigMap value or one
    // literal is the same in every pod.
    const idEnv = env(REPLICA_ID_ENV);
    if (idEnv && !["metadata.name", "metadata.uid"].includes(idEnv.valueFrom?.fieldRef?.fieldPath)) {
      problems.push(`${id}: env ${REPLICA_ID_ENV} is the same in every pod: ` +
        "take it from the pod (fieldRef metadata.name), or leave it unset");
    }
    if (config.cluster?.replica_id !== undefined) {
      problems.push(`${id}: cluster.replica_id in the ConfigMap is the same in every pod: ` +
        `take ${REPLICA_ID_ENV} from the pod (fieldRef metadata.name), or leave it unset`);
    }
  } else {
    const store = config.store?.path && mountedFile(t, c, config.store.path);
    if (!store?.volume?.persistentVolumeClaim) problems.push(`${id}: store.path ${config.store?.path} is not on a PersistentVolumeClaim`);
    if (replicas > 1) {
      problems.push(`${id}: ${replicas} replicas on SQLite: each would open its own database, or several one file; ` +
        `several replicas need the PostgreSQL store (env ${POSTGRES_URL_ENV} from a Secret)`);
    }
  }
  if (replicas <= 1) return problems;

  // A rollout starts a new pod before it stops an old one.
  const strategy = t.owner.spec.strategy ?? {};
  const rolling = strategy.rollingUpdate ?? {};
  if ((strategy.type ?? "RollingUpdate") !== "RollingUpdate" ||
      scaled(rolling.maxUnavailable ?? "25%", replicas, false) !== 0 ||
      !(scaled(rolling.maxSurge ?? "25%", replicas, true) >= 1)) {
    problems.push(`${id}: ${replicas} replicas need strategy RollingUpdate with maxUnavailable 0 and maxSurge >= 1, ` +
      "so a rollout never takes a serving replica away first");
  }

  // Node drains evict some replicas, never all, and are never blocked.
  const pdbs = objects.filter((o) => o.kind === "PodDisruptionBudget" && (o.metadata.namespace ?? "") === t.ns &&
    Object.keys(o.spec.selector?.matchLabels ?? {}).length > 0 && selects(o.spec.selector.matchLabels, t.meta.labels));
  if (pdbs.length === 0) {
    problems.push(`${id}: ${replicas} replicas and no PodDisruptionBudget selecting them: ` +
      "a node drain may evict them all at once");
  }
  for (const pdb of pdbs) {
    const allowed = pdb.spec.maxUnavailable !== undefined
      ? scaled(pdb.spec.maxUnavailable, replicas, true)
      : replicas - scaled(pdb.spec.minAvailable ?? 0, replicas, true);
    if (!(allowed >= 1)) {
      problems.push(`${id}: PodDisruptionBudget ${pdb.metadata.name} allows no eviction of its ${replicas} replicas: ` +
        "every node drain blocks");
    } else if (allowed >= replicas) {
      problems.push(`${id}: PodDisruptionBudget ${pdb.metadata.name} lets a drain evict all ${replicas} replicas at once`);
    }
  }

  // Spread over nodes (preferred is enough): one node must not hold them all.
  const selectsMe = (selector) => Object.keys(selector?.matchLabels ?? {}).length > 0 &&
    selects(selector.matchLabels, t.meta.labels);
  const anti = t.spec.affinity?.podAntiAffinity ?? {};
  const antiTerms = [...(anti.requiredDuringSchedulingIgnoredDuringExecution ?? []),
    ...(anti.preferredDuringSchedulingIgnoredDuringExecution ?? []).map((p) => p.podAffinityTerm)];
  const spread =
    (t.spec.topologySpreadConstraints ?? []).some((s) => s.topologyKey === HOSTNAME_TOPOLOGY && selectsMe(s.labelSelector)) ||
    antiTerms.some((term) => term?.topologyKey === HOSTNAME_TOPOLOGY && selectsMe(term.labelSelector));
  if (!spread) {
    problems.push(`${id}: ${replicas} replicas are not spread over nodes: add a topologySpreadConstraint ` +
      `or podAntiAffinity on ${HOSTNAME_TOPOLOGY} selecting its pods`);
  }
  return problems;
}

// Tool workers: register with a Service that exists, advertise a name the
// gateway's allow-list admits and a headless Service publishes, and share
// the gateway's registration token Secret.
function workerProblems(objects, templates) {
  const problems = [];
  const gateway = templates.find((t) => t.meta.labels?.["app.kubernetes.io/component"] === "gateway");
  for (const t of templates.filter((x) => x.meta.labels?.["app.kubernetes.io/component"] === "tool-worker")) {
    const id = `${t.owner.kind}/${t.owner.metadata.name}`;
    for (const c of t.spec.containers ?? []) {
      const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
      const [svcName, svcPort] = String(env.ASSISTANTS_GATEWAY ?? "").split(":");
      const svc = find(objects, "Service", t.ns, svcName);
      if (!svc || !(svc.spec.ports ?? []).some((p) => String(p.port) === svcPort)) {
        problems.push(`${id}: ASSISTANTS_GATEWAY ${env.ASSISTANTS_GATEWAY} is no Service port`);
      }
      const advertise = String(env.WORKER_ADVERTISE ?? "");
      const host = advertise.slice(0, advertise.lastIndexOf(":")).replace(/\$\(POD_NAME\)/g, "pod-0")
        .replace(/\$\(POD_NAMESPACE\)/g, t.ns || "default");
      const listenPort = portOf(env.WORKER_LISTEN);
      if (portOf(advertise) !== listenPort || !(c.ports ?? []).some((p) => p.containerPort === listenPort)) {
        problems.push(`${id}: WORKER_ADVERTISE ${advertise} / WORKER_LISTEN ${env.WORKER_LISTEN} disagree with the container port`);
      }
      const sub = t.spec.subdomain;
      const headless = sub && find(objects, "Service", t.ns, sub);
      if (!headless || headless.spec.clusterIP !== "None" || !selects(headless.spec.selector, t.meta.labels) ||
          host !== `pod-0.${sub}.${t.ns || "default"}.svc.cluster.local`) {
        problems.push(`${id}: advertised host ${host} is not published by a headless Service named after the pod subdomain`);
      }
      if (gateway) {
        const gw = (gateway.spec.containers ?? []).find((x) => x.name === "gateway");
        const cm = (gateway.spec.volumes ?? []).find((v) => v.configMap);
        const config = cm && find(objects, "ConfigMap", gateway.ns, cm.configMap.name);
        let allow = "";
        try {
          allow = JSON.parse(Object.values(config?.data ?? {})[0] ?? "{}").workers?.allowlist ?? "";
        } catch {
          // Reported by gatewayProblems.
        }
        // The config file takes a JSON array (a comma-separated string from env or flags).
        const globs = Array.isArray(allow) ? allow : String(allow).split(",");
        if (!globs.some((g) => g.trim() && globMatch(g.trim().toLowerCase(), host))) {
          problems.push(`${id}: advertised host ${host} is not admitted by the gateway's allow-list "${allow}"`);
        }
        const tokenFile = env.ASSISTANTS_WORKER_TOKEN_FILE ?? "";
        const mine = mountedFile(t, c, tokenFile);
        const theirs = gw && (gw.volumeMounts ?? []).map((m) => (gateway.spec.volumes ?? []).find((v) => v.name === m.name))
          .find((v) => v?.secret && v.secret.secretName === mine?.volume?.secret?.secretName);
        if (!mine?.volume?.secret || !theirs) {
          problems.push(`${id}: token file ${tokenFile} is not from the gateway's worker token Secret`);
        }
      }
    }
  }
  return problems;
}
