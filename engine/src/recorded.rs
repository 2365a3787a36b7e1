//! Recorded spaces: measured configurations replayed by the simulator. The valid set is
//! exactly the recorded configurations (an unrecorded point cannot be proposed).
//!
//! Two formats load:
//! * clgemm's own, `{"schema": "clgemm.space/1", "device": str, "shape": [m, n, k],
//!   "params": [[name, [values...]], ...], "records": [{"schedule": {name: value},
//!   "time_s": float|null, "compile_s": float|null, "error": str|null}, ...]}`.
//!   A record fails when `error` is set or `time_s` is null.
//! * Kernel Tuner cache files: `{"tune_params": {name: [values]}, "tune_params_keys": [...],
//!   "cache": {"v1,v2,...": {"time": ms | "InvalidConfig" | "CompilationFailedConfig" |
//!   "RuntimeFailedConfig" | ..., "compile_time": ms, "benchmark_time": ms, ...}}}`.
//!   Any string time (and the legacy 1e20 sentinel) is a failure. Times are converted to
//!   seconds. Parameters whose values are not all integers are replaced by their positions
//!   (0, 1, ...); `labels` keeps the original spelling.
//!
//! Cost of one evaluation (for "seconds to reach"): compile seconds (0 if unknown) plus run
//! seconds: Kernel Tuner's `benchmark_time` when present, else the kernel time itself.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::space::{Param, Space};

/// Kernel Tuner's legacy failure sentinel, 1e20 ms, in seconds.
const LEGACY_FAILED_S: f64 = 1e17;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub space: Arc<Space>,
    /// Per valid point (in `space.valid_indices()` order): seconds, NaN = failure.
    pub time: Vec<f64>,
    /// Per valid point: seconds one evaluation costs (compile + run).
    pub cost: Vec<f64>,
    pub device: String,
    pub shape: Vec<i64>,
    pub format: &'static str,
    /// Original spelling of each parameter's values.
    pub labels: Vec<Vec<String>>,
    /// Records dropped on load (duplicate or outside the declared domains), with reasons.
    pub skipped: Vec<String>,
}

pub struct Row {
    pub values: Vec<i64>,
    pub time: Option<f64>,
    pub cost: f64,
}

impl Recorded {
    /// Build from rows of parameter values. A duplicate configuration keeps its first row.
    pub fn from_rows(
        params: Vec<Param>,
        labels: Vec<Vec<String>>,
        rows: Vec<Row>,
        device: String,
        shape: Vec<i64>,
        format: &'static str,
        mut skipped: Vec<String>,
    ) -> Result<Recorded, String> {
        let probe = Space::listed(params.clone(), Vec::new())?;
        let mut by_index: HashMap<u64, (f64, f64)> = HashMap::new();
        for row in rows {
            let point = match probe.point_from_values(&row.values) {
                Ok(p) => p,
                Err(e) => {
                    skipped.push(e);
                    continue;
                }
            };
            let index = probe.index_of(&point);
            let time = row.time.filter(|t| t.is_finite() && *t > 0.0 && *t < 1e19);
            if by_index.contains_key(&index) {
                skipped.push(format!("duplicate record for {:?}", row.values));
                continue;
            }
            by_index.insert(index, (time.unwrap_or(f64::NAN), row.cost.max(0.0)));
        }
        if by_index.is_empty() {
            return Err("the recorded space holds no usable record".into());
        }
        let space = Space::listed(params, by_index.keys().copied().collect())?;
        let valid = space.valid_indices().unwrap_or(&[]);
        let time = valid.iter().map(|i| by_index[i].0).collect();
        let cost = valid.iter().map(|i| by_index[i].1).collect();
        Ok(Recorded {
            space: Arc::new(space),
            time,
            cost,
            device,
            shape,
            format,
            labels,
            skipped,
        })
    }

    /// The fastest recorded time and its row.
    pub fn best(&self) -> Option<(usize, f64)> {
        self.time
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_finite())
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, &t)| (i, t))
    }

    pub fn load_str(text: &str) -> Result<Recorded, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        if doc
            .get("schema")
            .and_then(Value::as_str)
            .is_some_and(|s| s.starts_with("clgemm.space/"))
        {
            load_clgemm(&doc)
        } else if doc.get("cache").is_some() && doc.get("tune_params").is_some() {
            load_kernel_tuner(&doc)
        } else {
            Err("unknown recorded-space format: expected clgemm's {\"schema\": \"clgemm.space/1\", ...} or a Kernel Tuner cache file (with \"tune_params\" and \"cache\")".into())
        }
    }

    pub fn load(path: &str) -> Result<Recorded, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read recorded space {path:?}: {e}"))?;
        Self::load_str(&text).map_err(|e| format!("{path}: {e}"))
    }
}

fn load_clgemm(doc: &Value) -> Result<Recorded, String> {
    let schema = doc["schema"].as_str().unwrap_or("");
    if schema != "clgemm.space/1" {
        return Err(format!(
            "schema {schema:?} is not supported; this engine reads clgemm.space/1"
        ));
    }
    let params_json = doc["params"]
        .as_array()
        .ok_or("\"params\" must be a list of [name, [values...]] pairs")?;
    let mut params = Vec::new();
    for p in params_json {
        let name = p.get(0).and_then(Value::as_str);
        let values = p.get(1).and_then(Value::as_array);
        let (Some(name), Some(values)) = (name, values) else {
            return Err(format!(
                "bad parameter entry {p}; expected [name, [values...]]"
            ));
        };
        let values = values
            .iter()
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| format!("parameter {name:?}: value {v} is not an integer"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        params.push(Param {
            name: name.to_string(),
            values,
        });
    }
    let labels = params
        .iter()
        .map(|p| p.values.iter().map(i64::to_string).collect())
        .collect();
    let records = doc["records"]
        .as_array()
        .ok_or("\"records\" must be a list")?;
    let mut rows = Vec::with_capacity(records.len());
    for (n, r) in records.iter().enumerate() {
        let sched = r
            .get("schedule")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("record {n} has no \"schedule\" object"))?;
        let values = params
            .iter()
            .map(|p| {
                sched.get(&p.name).and_then(Value::as_i64).ok_or_else(|| {
                    format!(
                        "record {n}: schedule lacks an integer value for {:?}",
                        p.name
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let failed = r.get("error").is_some_and(|e| !e.is_null());
        let time = if failed {
            None
        } else {
            r.get("time_s").and_then(Value::as_f64)
        };
        let compile = r.get("compile_s").and_then(Value::as_f64).unwrap_or(0.0);
        rows.push(Row {
            values,
            time,
            cost: compile + time.unwrap_or(0.0),
        });
    }
    let shape = doc
        .get("shape")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    let device = doc.get("device").map(describe).unwrap_or_default();
    Recorded::from_rows(
        params,
        labels,
        rows,
        device,
        shape,
        "clgemm.space/1",
        Vec::new(),
    )
}

/// A device field may be a string or an object; keep something printable.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Kernel Tuner writes keys with Python's str() of each value; match numbers numerically so
/// "1.0" and 1.0 (or "16" and 16) agree.
fn label_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn same_value(part: &str, v: &Value) -> bool {
    if part == label_of(v) {
        return true;
    }
    match (part.trim().parse::<f64>(), v.as_f64()) {
        (Ok(a), Some(b)) => a == b,
        _ => match v {
            Value::Bool(b) => part == if *b { "True" } else { "False" },
            _ => false,
        },
    }
}

fn load_kernel_tuner(doc: &Value) -> Result<Recorded, String> {
    let tune = doc["tune_params"]
        .as_object()
        .ok_or("\"tune_params\" must be an object")?;
    // Key order: tune_params_keys when given, else the object's order (serde_json keeps
    // insertion order with its preserve_order feature only, so prefer the explicit list).
    let names: Vec<String> = match doc.get("tune_params_keys").and_then(Value::as_array) {
        Some(keys) => keys
            .iter()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect(),
        None => tune.keys().cloned().collect(),
    };
    let mut params = Vec::new();
    let mut labels = Vec::new();
    let mut raw = Vec::new();
    for name in &names {
        let values = tune
            .get(name)
            .and_then(Value::as_array)
            .ok_or_else(|| format!("tune_params has no list for {name:?}"))?;
        let ints: Option<Vec<i64>> = values.iter().map(Value::as_i64).collect();
        let domain = ints.unwrap_or_else(|| (0..values.len() as i64).collect());
        params.push(Param {
            name: name.clone(),
            values: domain,
        });
        labels.push(values.iter().map(label_of).collect());
        raw.push(values.clone());
    }
    let cache = doc["cache"]
        .as_object()
        .ok_or("\"cache\" must be an object")?;
    let mut rows = Vec::with_capacity(cache.len());
    let mut skipped = Vec::new();
    'entries: for (key, entry) in cache {
        let parts: Vec<&str> = key.split(',').collect();
        if parts.len() != names.len() {
            skipped.push(format!(
                "cache key {key:?} has {} values, expected {}",
                parts.len(),
                names.len()
            ));
            continue;
        }
        let mut values = Vec::with_capacity(names.len());
        for (d, part) in parts.iter().enumerate() {
            match raw[d].iter().position(|v| same_value(part, v)) {
                Some(i) => values.push(params[d].values[i]),
                None => {
                    skipped.push(format!(
                        "cache key {key:?}: {part:?} is not a value of {:?}",
                        names[d]
                    ));
                    continue 'entries;
                }
            }
        }
        let ms = |field: &str| entry.get(field).and_then(Value::as_f64).map(|x| x / 1000.0);
        // Older Kernel Tuner caches mark a failed configuration with the time 1e20 ms; read
        // as a time it would be a measurement of 3 billion years (convolution 15x15 MI50:
        // 450 of 864 records).
        let time = ms("time").filter(|&s| s < LEGACY_FAILED_S);
        let run = ms("benchmark_time").or(time).unwrap_or(0.0);
        let cost = ms("compile_time").unwrap_or(0.0) + run;
        rows.push(Row { values, time, cost });
    }
    let device = doc.get("device_name").map(describe).unwrap_or_default();
    let shape = doc
        .get("problem_size")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    Recorded::from_rows(params, labels, rows, device, shape, "kernel_tuner", skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clgemm_format_loads_with_failures() {
        let text = r#"{"schema":"clgemm.space/1","device":"toy","shape":[64,64,64],
            "params":[["a",[1,2]],["b",[4,8]]],
            "records":[
              {"schedule":{"a":1,"b":4},"time_s":0.5,"compile_s":0.1,"error":null},
              {"schedule":{"a":2,"b":8},"time_s":null,"compile_s":0.2,"error":"build failed"},
              {"schedule":{"a":2,"b":4},"time_s":0.25,"compile_s":null,"error":null}]}"#;
        let r = Recorded::load_str(text).unwrap();
        assert_eq!(r.space.valid_count(), Some(3));
        // valid order: (1,4)=0, (2,4)=2, (2,8)=3
        assert_eq!(r.space.valid_indices().unwrap(), &[0, 2, 3]);
        assert_eq!(r.time[0], 0.5);
        assert_eq!(r.time[1], 0.25);
        assert!(r.time[2].is_nan());
        assert!((r.cost[0] - 0.6).abs() < 1e-12 && (r.cost[2] - 0.2).abs() < 1e-12);
        assert_eq!(r.best(), Some((1, 0.25)));
        assert_eq!(r.shape, vec![64, 64, 64]);
    }

    #[test]
    fn kernel_tuner_cache_loads() {
        let text = r#"{"device_name":"GPU X","kernel_name":"k","problem_size":[256,256],
            "tune_params_keys":["block_size_x","scale","mode"],
            "tune_params":{"block_size_x":[16,32],"scale":[0.5,1.0],"mode":["a","b"]},
            "cache":{
              "16,0.5,a":{"block_size_x":16,"time":2.0,"compile_time":100.0,"benchmark_time":14.0},
              "32,1.0,b":{"time":"CompilationFailedConfig","compile_time":50.0},
              "32,0.5,a":{"time":1.0,"compile_time":120.0},
              "64,0.5,a":{"time":1.0},
              "16,1.0,b":{"time":1e20}
            }}"#;
        let r = Recorded::load_str(text).unwrap();
        assert_eq!(r.format, "kernel_tuner");
        assert_eq!(r.space.valid_count(), Some(4));
        assert_eq!(r.labels[1], vec!["0.5", "1.0"]);
        assert_eq!(r.space.params()[2].values, vec![0, 1]);
        assert_eq!(r.skipped.len(), 1);
        let p = r.space.point_from_values(&[32, 0, 0]).unwrap();
        let row = r.space.valid_rank(r.space.index_of(&p)).unwrap();
        assert_eq!(r.time[row], 0.001);
        assert!((r.cost[row] - 0.121).abs() < 1e-12);
        let p = r.space.point_from_values(&[32, 1, 1]).unwrap();
        let row = r.space.valid_rank(r.space.index_of(&p)).unwrap();
        assert!(r.time[row].is_nan());
        assert!((r.cost[row] - 0.05).abs() < 1e-12);
        let p = r.space.point_from_values(&[16, 0, 0]).unwrap();
        let row = r.space.valid_rank(r.space.index_of(&p)).unwrap();
        assert!((r.cost[row] - 0.114).abs() < 1e-12);
        // The legacy sentinel is a failure, its cost nothing known.
        let p = r.space.point_from_values(&[16, 1, 1]).unwrap();
        let row = r.space.valid_rank(r.space.index_of(&p)).unwrap();
        assert!(r.time[row].is_nan() && r.cost[row] == 0.0);
    }

    #[test]
    fn unknown_format_is_refused_with_a_hint() {
        let e = Recorded::load_str("{\"x\": 1}").unwrap_err();
        assert!(
            e.contains("clgemm.space/1") && e.contains("Kernel Tuner"),
            "{e}"
        );
        assert!(Recorded::load_str("nope").is_err());
    }
}
