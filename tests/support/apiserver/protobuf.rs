//! Decoding of the Kubernetes protobuf request bodies kubectl sends for the objects its
//! `create` subcommands make (`kubectl create namespace|configmap|secret|service|deployment|
//! job|cronjob`): client-go's typed clients write `application/vnd.kubernetes.protobuf` and do
//! not fall back to JSON. The envelope is `k8s\0` + runtime.Unknown{typeMeta, raw}; `raw` is
//! decoded with a field table of those types (field numbers from k8s.io/api's generated.proto).
//! Go's encoder writes every non-pointer field, empty or not; as its JSON encoder omits them
//! (`omitempty`), empty strings, `false` and the zero of non-pointer integers are left out, and
//! an unknown field is ignored only when empty. A non-empty field outside the table is an error
//! (415), never silently dropped. Status fields are skipped: the server ignores status on these
//! writes anyway.
//! Responses are always JSON, which those clients accept too.

use serde_json::{Map, Value, json};

use super::error::ApiError;

#[derive(Clone, Copy)]
enum F {
    Str,
    /// A pointer integer: 0 is a value.
    Int,
    /// A non-pointer integer: 0 means unset.
    IntOmit,
    Bool,
    /// bytes, as base64 in JSON.
    Bytes,
    Msg(&'static str),
    MapStr,
    MapBytes,
    MapQuantity,
    /// Read and ignored (status).
    Skip,
}

use F::*;

type Fields = &'static [(u32, &'static str, F, bool)];

const OBJECT_META: Fields = &[
    (1, "name", Str, false),
    (2, "generateName", Str, false),
    (3, "namespace", Str, false),
    (4, "selfLink", Str, false),
    (5, "uid", Str, false),
    (6, "resourceVersion", Str, false),
    (7, "generation", IntOmit, false),
    (8, "creationTimestamp", Msg("Time"), false),
    (9, "deletionTimestamp", Msg("Time"), false),
    (10, "deletionGracePeriodSeconds", Int, false),
    (11, "labels", MapStr, false),
    (12, "annotations", MapStr, false),
    (13, "ownerReferences", Msg("OwnerReference"), true),
    (14, "finalizers", Str, true),
    (17, "managedFields", Msg("ManagedFieldsEntry"), true),
];

fn fields(message: &str) -> Option<Fields> {
    Some(match message {
        "ObjectMeta" => OBJECT_META,
        "OwnerReference" => &[
            (1, "kind", Str, false),
            (3, "name", Str, false),
            (4, "uid", Str, false),
            (5, "apiVersion", Str, false),
            (6, "controller", Bool, false),
            (7, "blockOwnerDeletion", Bool, false),
        ],
        "ManagedFieldsEntry" => &[
            (1, "manager", Str, false),
            (2, "operation", Str, false),
            (3, "apiVersion", Str, false),
            (4, "time", Msg("Time"), false),
            (6, "fieldsType", Str, false),
            (7, "fieldsV1", Msg("FieldsV1"), false),
            (8, "subresource", Str, false),
        ],
        "Namespace" => &[(1, "metadata", Msg("ObjectMeta"), false), (2, "spec", Msg("NamespaceSpec"), false), (3, "status", Skip, false)],
        "NamespaceSpec" => &[(1, "finalizers", Str, true)],
        "ConfigMap" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "data", MapStr, false),
            (3, "binaryData", MapBytes, false),
            (4, "immutable", Bool, false),
        ],
        "Secret" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "data", MapBytes, false),
            (3, "type", Str, false),
            (4, "stringData", MapStr, false),
            (5, "immutable", Bool, false),
        ],
        "Service" => &[(1, "metadata", Msg("ObjectMeta"), false), (2, "spec", Msg("ServiceSpec"), false), (3, "status", Skip, false)],
        "ServiceSpec" => &[
            (1, "ports", Msg("ServicePort"), true),
            (2, "selector", MapStr, false),
            (3, "clusterIP", Str, false),
            (4, "type", Str, false),
            (5, "externalIPs", Str, true),
            (7, "sessionAffinity", Str, false),
            (10, "externalName", Str, false),
            (18, "clusterIPs", Str, true),
        ],
        "ServicePort" => &[
            (1, "name", Str, false),
            (2, "protocol", Str, false),
            (3, "port", Int, false),
            (4, "targetPort", Msg("IntOrString"), false),
            (5, "nodePort", IntOmit, false),
            (6, "appProtocol", Str, false),
        ],
        "Deployment" => &[(1, "metadata", Msg("ObjectMeta"), false), (2, "spec", Msg("DeploymentSpec"), false), (3, "status", Skip, false)],
        "DeploymentSpec" => &[
            (1, "replicas", Int, false),
            (2, "selector", Msg("LabelSelector"), false),
            (3, "template", Msg("PodTemplateSpec"), false),
            (4, "strategy", Msg("DeploymentStrategy"), false),
            (5, "minReadySeconds", IntOmit, false),
            (6, "revisionHistoryLimit", Int, false),
            (7, "paused", Bool, false),
        ],
        "DeploymentStrategy" => &[(1, "type", Str, false)],
        "LabelSelector" => &[(1, "matchLabels", MapStr, false), (2, "matchExpressions", Msg("LabelSelectorRequirement"), true)],
        "LabelSelectorRequirement" => &[(1, "key", Str, false), (2, "operator", Str, false), (3, "values", Str, true)],
        "Job" => &[(1, "metadata", Msg("ObjectMeta"), false), (2, "spec", Msg("JobSpec"), false), (3, "status", Skip, false)],
        "JobSpec" => &[
            (1, "parallelism", Int, false),
            (2, "completions", Int, false),
            (3, "activeDeadlineSeconds", Int, false),
            (4, "selector", Msg("LabelSelector"), false),
            (5, "manualSelector", Bool, false),
            (6, "template", Msg("PodTemplateSpec"), false),
            (7, "backoffLimit", Int, false),
            (8, "ttlSecondsAfterFinished", Int, false),
            (9, "completionMode", Str, false),
            (10, "suspend", Bool, false),
        ],
        "CronJob" => &[(1, "metadata", Msg("ObjectMeta"), false), (2, "spec", Msg("CronJobSpec"), false), (3, "status", Skip, false)],
        "CronJobSpec" => &[
            (1, "schedule", Str, false),
            (2, "startingDeadlineSeconds", Int, false),
            (3, "concurrencyPolicy", Str, false),
            (4, "suspend", Bool, false),
            (5, "jobTemplate", Msg("JobTemplateSpec"), false),
            (6, "successfulJobsHistoryLimit", Int, false),
            (7, "failedJobsHistoryLimit", Int, false),
            (8, "timeZone", Str, false),
        ],
        "JobTemplateSpec" => &[(1, "metadata", Msg("ObjectMeta"), false), (2, "spec", Msg("JobSpec"), false)],
        "PodTemplateSpec" => &[(1, "metadata", Msg("ObjectMeta"), false), (2, "spec", Msg("PodSpec"), false)],
        "PodSpec" => &[
            (2, "containers", Msg("Container"), true),
            (3, "restartPolicy", Str, false),
            (4, "terminationGracePeriodSeconds", Int, false),
            (6, "dnsPolicy", Str, false),
            (7, "nodeSelector", MapStr, false),
            (8, "serviceAccountName", Str, false),
            (10, "nodeName", Str, false),
            (19, "schedulerName", Str, false),
            (20, "initContainers", Msg("Container"), true),
        ],
        "Container" => &[
            (1, "name", Str, false),
            (2, "image", Str, false),
            (3, "command", Str, true),
            (4, "args", Str, true),
            (5, "workingDir", Str, false),
            (6, "ports", Msg("ContainerPort"), true),
            (7, "env", Msg("EnvVar"), true),
            (8, "resources", Msg("ResourceRequirements"), false),
            (9, "volumeMounts", Msg("VolumeMount"), true),
            (13, "terminationMessagePath", Str, false),
            (14, "imagePullPolicy", Str, false),
            (16, "stdin", Bool, false),
            (17, "stdinOnce", Bool, false),
            (18, "tty", Bool, false),
            (20, "terminationMessagePolicy", Str, false),
        ],
        "ContainerPort" => &[
            (1, "name", Str, false),
            (2, "hostPort", IntOmit, false),
            (3, "containerPort", Int, false),
            (4, "protocol", Str, false),
            (5, "hostIP", Str, false),
        ],
        "EnvVar" => &[(1, "name", Str, false), (2, "value", Str, false)],
        "ResourceRequirements" => &[(1, "limits", MapQuantity, false), (2, "requests", MapQuantity, false)],
        "VolumeMount" => &[(1, "name", Str, false), (2, "readOnly", Bool, false), (3, "mountPath", Str, false), (4, "subPath", Str, false)],
        _ => return None,
    })
}

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn bad(what: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("error decoding protobuf: {what}"))
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or_else(|| bad("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("varint too long"))
    }

    fn next(&mut self) -> Result<Option<(u32, Wire<'a>)>, ApiError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.pos += 8;
                Wire::Fixed
            }
            2 => {
                let len = self.varint()? as usize;
                let b = self.buf.get(self.pos..self.pos + len).ok_or_else(|| bad("truncated field"))?;
                self.pos += len;
                Wire::Bytes(b)
            }
            5 => {
                self.pos += 4;
                Wire::Fixed
            }
            w => return Err(bad(format!("wire type {w}"))),
        };
        Ok(Some(((key >> 3) as u32, wire)))
    }
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() { T[(n >> (18 - 6 * i)) as usize & 63] as char } else { '=' });
        }
    }
    out
}

fn string(b: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(b.to_vec()).map_err(bad)
}

fn fields_of(b: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, ApiError> {
    let mut r = Reader { buf: b, pos: 0 };
    let mut out = Vec::new();
    while let Some(f) = r.next()? {
        out.push(f);
    }
    Ok(out)
}

/// The special messages that are scalars in JSON.
fn special(message: &str, b: &[u8]) -> Result<Option<Value>, ApiError> {
    let fs = fields_of(b)?;
    let str_field = |n: u32| fs.iter().find_map(|(k, w)| if let (true, Wire::Bytes(s)) = (*k == n, w) { string(s).ok() } else { None });
    let int_field = |n: u32| fs.iter().find_map(|(k, w)| if let (true, Wire::Varint(v)) = (*k == n, w) { Some(*v as i64) } else { None });
    Ok(Some(match message {
        "Time" => {
            let t = chrono::DateTime::from_timestamp(int_field(1).unwrap_or(0), 0).ok_or_else(|| bad("time"))?;
            json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        }
        "Quantity" => json!(str_field(1).unwrap_or_default()),
        "IntOrString" => {
            if int_field(1).unwrap_or(0) == 1 {
                json!(str_field(3).unwrap_or_default())
            } else {
                json!(int_field(2).unwrap_or(0) as i32)
            }
        }
        "FieldsV1" => fs
            .iter()
            .find_map(|(k, w)| if let (1, Wire::Bytes(s)) = (*k, w) { serde_json::from_slice(s).ok() } else { None })
            .unwrap_or(json!({})),
        _ => return Ok(None),
    }))
}

fn decode(message: &str, b: &[u8]) -> Result<Value, ApiError> {
    if let Some(v) = special(message, b)? {
        return Ok(v);
    }
    let table = fields(message).ok_or_else(|| unsupported(message, None))?;
    let mut out = Map::new();
    for (num, wire) in fields_of(b)? {
        let empty = matches!(wire, Wire::Varint(0)) || matches!(wire, Wire::Bytes(b) if b.is_empty());
        let Some(&(_, name, kind, repeated)) = table.iter().find(|f| f.0 == num) else {
            if empty {
                continue;
            }
            return Err(unsupported(message, Some(num)));
        };
        let value = match (kind, wire) {
            (Skip, _) => continue,
            (Str | Bool | IntOmit, _) if empty && !repeated => continue,
            (Str, Wire::Bytes(s)) => json!(string(s)?),
            (Bytes, Wire::Bytes(s)) => json!(base64(s)),
            (Int | IntOmit, Wire::Varint(v)) => json!(v as i64),
            (Bool, Wire::Varint(v)) => json!(v != 0),
            // A zero time.Time is encoded empty; its JSON is null.
            (Msg("Time"), Wire::Bytes([])) => continue,
            (Msg(m), Wire::Bytes(s)) => decode(m, s)?,
            (MapStr | MapBytes | MapQuantity, Wire::Bytes(s)) => {
                let (mut k, mut v) = (String::new(), Value::Null);
                for (n, w) in fields_of(s)? {
                    match (n, w, kind) {
                        (1, Wire::Bytes(x), _) => k = string(x)?,
                        (2, Wire::Bytes(x), MapStr) => v = json!(string(x)?),
                        (2, Wire::Bytes(x), MapBytes) => v = json!(base64(x)),
                        (2, Wire::Bytes(x), _) => v = decode("Quantity", x)?,
                        _ => return Err(bad(format!("map entry of {message}.{name}"))),
                    }
                }
                if v.is_null() {
                    v = json!("");
                }
                out.entry(name).or_insert_with(|| json!({}))[k] = v;
                continue;
            }
            _ => return Err(bad(format!("unexpected wire type for {message}.{name}"))),
        };
        if repeated {
            out.entry(name).or_insert_with(|| json!([])).as_array_mut().expect("array").push(value);
        } else {
            out.insert(name.to_string(), value);
        }
    }
    Ok(Value::Object(out))
}

fn unsupported(message: &str, field: Option<u32>) -> ApiError {
    let what = match field {
        Some(n) => format!("field {n} of {message}"),
        None => format!("{message} objects"),
    };
    ApiError::new(
        415,
        "UnsupportedMediaType",
        format!("the test API server cannot decode protobuf {what}; send JSON (e.g. kubectl apply -f)"),
    )
}

/// A protobuf request body as the JSON object it encodes.
pub fn to_json(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body.strip_prefix(b"k8s\0").ok_or_else(|| bad("missing the k8s envelope"))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, w) in fields_of(rest)? {
        match (n, w) {
            (1, Wire::Bytes(tm)) => {
                for (k, v) in fields_of(tm)? {
                    match (k, v) {
                        (1, Wire::Bytes(s)) => api_version = string(s)?,
                        (2, Wire::Bytes(s)) => kind = string(s)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    let mut obj = decode(&kind, raw)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}
