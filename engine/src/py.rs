//! The Python bindings, and the only module that knows about Python.
//!
//! Every entry point runs inside `guard`, which turns a Rust panic into
//! `clgemm.errors.EngineError` (so no panic ever reaches Python as PanicException), and every
//! error is raised as a clgemm exception class: `ScheduleError` for bad schedules, domains
//! and constraints, `EngineError` for everything else.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyType};

use crate::recorded::{Recorded, Row};
use crate::simulator::{simulate as run_simulation, SimConfig, ORACLE};
use crate::space::{Param, Point, Space, DEFAULT_MAX_ENUMERATE};
use crate::strategies::{self, Strategy, PRIOR_FREE, STRATEGIES};
use crate::telemetry::{monotonic as clock, Sampler, Source};

/// An exception of class `clgemm.errors.<class>` (RuntimeError if clgemm is not importable).
fn clgemm_error(class: &str, message: String) -> PyErr {
    Python::with_gil(|py| {
        let cls = py
            .import("clgemm.errors")
            .and_then(|m| m.getattr(class))
            .and_then(|c| c.downcast_into::<PyType>().map_err(PyErr::from));
        match cls {
            Ok(cls) => PyErr::from_type(cls, message),
            Err(_) => PyRuntimeError::new_err(message),
        }
    })
}

fn engine_err(message: impl Into<String>) -> PyErr {
    clgemm_error("EngineError", message.into())
}

fn schedule_err(message: impl Into<String>) -> PyErr {
    clgemm_error("ScheduleError", message.into())
}

/// Run `f`, mapping a panic to EngineError.
fn guard<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(engine_err(format!(
                "internal error in clgemm's engine ({what}); please report it with the call that caused it"
            )))
        }
    }
}

fn point_of(space: &Space, values: &[i64]) -> PyResult<Point> {
    space.point_from_values(values).map_err(schedule_err)
}

/// `[[name, [values...]], ...]` (lists or tuples, as `SearchSpace.engine_spec()` gives).
fn params_arg(items: Vec<Vec<Bound<'_, PyAny>>>) -> PyResult<Vec<Param>> {
    items
        .into_iter()
        .map(|pair| match pair.as_slice() {
            [name, values] => Ok(Param {
                name: name.extract()?,
                values: values.extract()?,
            }),
            _ => Err(schedule_err("params must be [name, [values...]] pairs")),
        })
        .collect()
}

// ---------------------------------------------------------------- Space

/// A schedule space: parameters with domains and the validity rules (constraint text).
#[pyclass(name = "Space", module = "clgemm._engine", frozen)]
pub struct PySpace {
    inner: Arc<Space>,
}

#[pymethods]
impl PySpace {
    #[new]
    #[pyo3(signature = (params, limits, constraints, max_enumerate = DEFAULT_MAX_ENUMERATE))]
    fn new(
        py: Python<'_>,
        params: Vec<Vec<Bound<'_, PyAny>>>,
        limits: HashMap<String, i64>,
        constraints: Vec<String>,
        max_enumerate: u64,
    ) -> PyResult<PySpace> {
        guard(|| {
            let params = params_arg(params)?;
            // Enumeration can take a moment on big spaces: let other Python threads run.
            let space = py
                .allow_threads(|| Space::constrained(params, &limits, &constraints, max_enumerate))
                .map_err(schedule_err)?;
            Ok(PySpace {
                inner: Arc::new(space),
            })
        })
    }

    /// Points in the full product of the domains.
    fn size(&self) -> u64 {
        self.inner.size()
    }

    /// Number of valid points; None if the space was too large to enumerate.
    fn valid_count(&self) -> Option<u64> {
        self.inner.valid_count()
    }

    /// Mixed-radix index of a value vector in the full space (first parameter most significant).
    fn index(&self, values: Vec<i64>) -> PyResult<u64> {
        guard(|| Ok(self.inner.index_of(&point_of(&self.inner, &values)?)))
    }

    /// The value vector at a full-space index.
    fn values(&self, index: u64) -> PyResult<Vec<i64>> {
        guard(|| {
            let p = self.inner.point_of(index).map_err(schedule_err)?;
            Ok(self.inner.values_of(&p))
        })
    }

    fn is_valid(&self, values: Vec<i64>) -> PyResult<bool> {
        guard(|| Ok(self.inner.is_valid(&point_of(&self.inner, &values)?)))
    }

    /// Valid value vectors one parameter away: to an adjacent domain value, or any (any=True).
    #[pyo3(signature = (values, any = false))]
    fn neighbours(&self, values: Vec<i64>, any: bool) -> PyResult<Vec<Vec<i64>>> {
        guard(|| {
            let p = point_of(&self.inner, &values)?;
            Ok(self
                .inner
                .neighbours(&p, any)
                .iter()
                .map(|q| self.inner.values_of(q))
                .collect())
        })
    }

    /// Valid value vectors in index order, `count` of them from the `start`-th.
    #[pyo3(signature = (start = 0, count = None))]
    fn valid_values(&self, start: usize, count: Option<usize>) -> PyResult<Vec<Vec<i64>>> {
        guard(|| {
            let valid = self.inner.valid_indices().ok_or_else(|| {
                engine_err("this space was too large to enumerate; raise max_enumerate or sample it with a strategy")
            })?;
            let end = count.map_or(valid.len(), |c| start.saturating_add(c).min(valid.len()));
            Ok(valid[start.min(end)..end]
                .iter()
                .filter_map(|&i| self.inner.point_of(i).ok())
                .map(|p| self.inner.values_of(&p))
                .collect())
        })
    }

    #[getter]
    fn names(&self) -> Vec<String> {
        self.inner.params().iter().map(|p| p.name.clone()).collect()
    }

    #[getter]
    fn domains(&self) -> Vec<Vec<i64>> {
        self.inner
            .params()
            .iter()
            .map(|p| p.values.clone())
            .collect()
    }

    #[getter]
    fn constraints(&self) -> Vec<String> {
        self.inner
            .rule_sources()
            .into_iter()
            .map(str::to_string)
            .collect()
    }
}

// ---------------------------------------------------------------- RecordedSpace

/// Measured configurations (clgemm.space/1 or Kernel Tuner cache) for the simulator.
#[pyclass(name = "RecordedSpace", module = "clgemm._engine", frozen)]
pub struct PyRecorded {
    inner: Arc<Recorded>,
}

#[pymethods]
impl PyRecorded {
    #[staticmethod]
    fn load(py: Python<'_>, path: String) -> PyResult<PyRecorded> {
        guard(|| {
            let rec = py
                .allow_threads(|| Recorded::load(&path))
                .map_err(engine_err)?;
            Ok(PyRecorded {
                inner: Arc::new(rec),
            })
        })
    }

    #[staticmethod]
    fn loads(py: Python<'_>, text: String) -> PyResult<PyRecorded> {
        guard(|| {
            let rec = py
                .allow_threads(|| Recorded::load_str(&text))
                .map_err(engine_err)?;
            Ok(PyRecorded {
                inner: Arc::new(rec),
            })
        })
    }

    /// Build in memory: rows of (values, time_s or None, cost_s).
    #[staticmethod]
    #[pyo3(signature = (params, rows, device = String::new(), shape = Vec::new()))]
    fn from_rows(
        params: Vec<Vec<Bound<'_, PyAny>>>,
        rows: Vec<(Vec<i64>, Option<f64>, f64)>,
        device: String,
        shape: Vec<i64>,
    ) -> PyResult<PyRecorded> {
        guard(|| {
            let params = params_arg(params)?;
            let labels = params
                .iter()
                .map(|p| p.values.iter().map(i64::to_string).collect())
                .collect();
            let rows = rows
                .into_iter()
                .map(|(values, time, cost)| Row { values, time, cost })
                .collect();
            let rec =
                Recorded::from_rows(params, labels, rows, device, shape, "memory", Vec::new())
                    .map_err(engine_err)?;
            Ok(PyRecorded {
                inner: Arc::new(rec),
            })
        })
    }

    #[getter]
    fn space(&self) -> PySpace {
        PySpace {
            inner: self.inner.space.clone(),
        }
    }

    #[getter]
    fn device(&self) -> String {
        self.inner.device.clone()
    }

    #[getter]
    fn shape(&self) -> Vec<i64> {
        self.inner.shape.clone()
    }

    #[getter]
    fn format(&self) -> &'static str {
        self.inner.format
    }

    #[getter]
    fn labels(&self) -> Vec<Vec<String>> {
        self.inner.labels.clone()
    }

    #[getter]
    fn skipped(&self) -> Vec<String> {
        self.inner.skipped.clone()
    }

    fn __len__(&self) -> usize {
        self.inner.time.len()
    }

    /// (values, time_s) of the fastest record.
    fn best(&self) -> Option<(Vec<i64>, f64)> {
        let (row, t) = self.inner.best()?;
        let index = self.inner.space.valid_indices()?[row];
        let p = self.inner.space.point_of(index).ok()?;
        Some((self.inner.space.values_of(&p), t))
    }

    /// (time_s or None for a failure, cost_s) of a recorded configuration; None if unrecorded.
    fn lookup(&self, values: Vec<i64>) -> PyResult<Option<(Option<f64>, f64)>> {
        guard(|| {
            let p = point_of(&self.inner.space, &values)?;
            Ok(self
                .inner
                .space
                .valid_rank(self.inner.space.index_of(&p))
                .map(|row| {
                    let t = self.inner.time[row];
                    (t.is_finite().then_some(t), self.inner.cost[row])
                }))
        })
    }
}

// ---------------------------------------------------------------- Strategy

fn space_of(obj: &Bound<'_, PyAny>) -> PyResult<Arc<Space>> {
    if let Ok(s) = obj.downcast::<PySpace>() {
        return Ok(s.get().inner.clone());
    }
    if let Ok(r) = obj.downcast::<PyRecorded>() {
        return Ok(r.get().inner.space.clone());
    }
    Err(engine_err(
        "space must be a clgemm._engine.Space or RecordedSpace",
    ))
}

/// One search run: ask for candidates, tell their times (None = failed).
#[pyclass(name = "Strategy", module = "clgemm._engine")]
pub struct PyStrategy {
    inner: Box<dyn Strategy>,
    space: Arc<Space>,
    #[pyo3(get)]
    name: String,
}

#[pymethods]
impl PyStrategy {
    #[new]
    #[pyo3(signature = (name, space, seed = 0, options = None))]
    fn new(
        name: String,
        space: &Bound<'_, PyAny>,
        seed: u64,
        options: Option<HashMap<String, f64>>,
    ) -> PyResult<PyStrategy> {
        guard(|| {
            let space = space_of(space)?;
            let inner = strategies::make(&name, space.clone(), seed, options.unwrap_or_default())
                .map_err(engine_err)?;
            Ok(PyStrategy { inner, space, name })
        })
    }

    /// Up to n new valid candidates as value vectors (fewer once the space is exhausted).
    #[pyo3(signature = (n = 1))]
    fn ask(&mut self, n: usize) -> PyResult<Vec<Vec<i64>>> {
        guard(|| {
            Ok(self
                .inner
                .ask(n)
                .iter()
                .map(|p| self.space.values_of(p))
                .collect())
        })
    }

    /// Like ask, as full-space indices (cheaper to pass around).
    #[pyo3(signature = (n = 1))]
    fn ask_indices(&mut self, n: usize) -> PyResult<Vec<u64>> {
        guard(|| {
            Ok(self
                .inner
                .ask(n)
                .iter()
                .map(|p| self.space.index_of(p))
                .collect())
        })
    }

    /// Report a measurement (seconds) or a failure (None).
    #[pyo3(signature = (values, time))]
    fn tell(&mut self, values: Vec<i64>, time: Option<f64>) -> PyResult<()> {
        guard(|| {
            let p = point_of(&self.space, &values)?;
            self.inner.tell(&p, time);
            Ok(())
        })
    }

    #[pyo3(signature = (index, time))]
    fn tell_index(&mut self, index: u64, time: Option<f64>) -> PyResult<()> {
        guard(|| {
            let p = self.space.point_of(index).map_err(schedule_err)?;
            self.inner.tell(&p, time);
            Ok(())
        })
    }

    /// Cost-model predictions: (values, predicted seconds) pairs ('model' strategy).
    fn set_scores(&mut self, scores: Vec<(Vec<i64>, f64)>) -> PyResult<()> {
        guard(|| {
            let mut pts = Vec::with_capacity(scores.len());
            for (values, s) in scores {
                pts.push((self.space.index_of(&point_of(&self.space, &values)?), s));
            }
            self.inner.set_scores(pts).map_err(engine_err)
        })
    }

    /// (values, time_s) of the best measurement so far.
    fn best(&self) -> PyResult<Option<(Vec<i64>, f64)>> {
        guard(|| {
            Ok(self.inner.memory().best.and_then(|(i, t)| {
                self.space
                    .point_of(i)
                    .ok()
                    .map(|p| (self.space.values_of(&p), t))
            }))
        })
    }

    #[getter]
    fn evaluations(&self) -> usize {
        self.inner.memory().told
    }

    #[getter]
    fn failures(&self) -> usize {
        self.inner.memory().failures
    }
}

// ---------------------------------------------------------------- simulator

fn nan_to_none(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Replay `strategy` over a recorded space for each seed, in parallel.
#[pyfunction]
#[pyo3(signature = (recorded, strategy, seeds, budget, threads = 0, options = None, scores = None, oracle_noise = None, batch = 1, stop_at = None, curves = true))]
#[allow(clippy::too_many_arguments)]
fn simulate<'py>(
    py: Python<'py>,
    recorded: &PyRecorded,
    strategy: String,
    seeds: Vec<u64>,
    budget: usize,
    threads: usize,
    options: Option<HashMap<String, f64>>,
    scores: Option<Vec<f64>>,
    oracle_noise: Option<f64>,
    batch: usize,
    stop_at: Option<f64>,
    curves: bool,
) -> PyResult<Bound<'py, PyDict>> {
    guard(|| {
        let cfg = SimConfig {
            strategy,
            options: options.unwrap_or_default(),
            seeds,
            budget,
            threads,
            scores,
            oracle_noise,
            stop_at,
            batch,
        };
        let rec = recorded.inner.clone();
        let out = py
            .allow_threads(|| catch_unwind(AssertUnwindSafe(|| run_simulation(&rec, &cfg))))
            .map_err(|_| engine_err("internal error in the simulator; please report it"))?
            .map_err(engine_err)?;
        let result = PyDict::new(py);
        result.set_item("best_known", out.best_known)?;
        let runs = PyList::empty(py);
        for r in &out.runs {
            let d = PyDict::new(py);
            d.set_item("seed", r.seed)?;
            if curves {
                d.set_item(
                    "curve",
                    r.curve.iter().map(|&x| nan_to_none(x)).collect::<Vec<_>>(),
                )?;
            } else {
                d.set_item("curve", PyList::empty(py))?;
            }
            d.set_item("evaluations", r.evaluations)?;
            d.set_item("failures", r.failures)?;
            d.set_item("seconds", r.seconds)?;
            d.set_item("best_time", r.best_time)?;
            let best_values = r.best_row.and_then(|row| {
                let index = rec.space.valid_indices()?[row];
                rec.space
                    .point_of(index)
                    .ok()
                    .map(|p| rec.space.values_of(&p))
            });
            d.set_item("best_values", best_values)?;
            d.set_item("evals_to_95", r.evals_to_95)?;
            d.set_item("evals_to_99", r.evals_to_99)?;
            d.set_item("seconds_to_95", r.seconds_to_95)?;
            d.set_item("seconds_to_99", r.seconds_to_99)?;
            runs.append(d)?;
        }
        result.set_item("runs", runs)?;
        Ok(result)
    })
}

// ---------------------------------------------------------------- telemetry

/// Background sampler of SM clock (MHz), temperature (C) and power (W).
#[pyclass(name = "Telemetry", module = "clgemm._engine")]
pub struct PyTelemetry {
    inner: Sampler,
}

#[pymethods]
impl PyTelemetry {
    #[new]
    #[pyo3(signature = (source = "auto".to_string(), rate_hz = 1000.0, capacity = 600_000, device = 0, hwmon_root = "/sys/class/drm".to_string()))]
    fn new(
        source: String,
        rate_hz: f64,
        capacity: usize,
        device: u32,
        hwmon_root: String,
    ) -> PyResult<PyTelemetry> {
        guard(|| {
            let (src, status) = Source::open(&source, device, Path::new(&hwmon_root)).map_err(|e| {
                engine_err(format!("telemetry source {source:?} is unavailable: {e}; use source='auto' to fall back to 'absent'"))
            })?;
            let inner = Sampler::new(src, status, rate_hz, capacity).map_err(engine_err)?;
            Ok(PyTelemetry { inner })
        })
    }

    /// Start sampling; False (nothing started) when the source is absent.
    fn start(&mut self) -> PyResult<bool> {
        guard(|| self.inner.start().map_err(engine_err))
    }

    fn stop(&mut self, py: Python<'_>) -> PyResult<()> {
        guard(|| {
            let inner = &mut self.inner;
            py.allow_threads(|| inner.stop()).map_err(engine_err)
        })
    }

    /// (t, sm_mhz, temp_c, power_w) columns, oldest first; clear=True drains the buffer.
    #[pyo3(signature = (clear = false))]
    #[allow(clippy::type_complexity)]
    fn samples(&self, clear: bool) -> PyResult<(Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>)> {
        guard(|| {
            let s = self.inner.samples(clear);
            Ok((
                s.iter().map(|x| x.t).collect(),
                s.iter().map(|x| x.sm_mhz).collect(),
                s.iter().map(|x| x.temp_c).collect(),
                s.iter().map(|x| x.power_w).collect(),
            ))
        })
    }

    #[getter]
    fn source(&self) -> Option<&'static str> {
        self.inner.source_name()
    }

    #[getter]
    fn status(&self) -> String {
        self.inner.status.clone()
    }

    #[getter]
    fn running(&self) -> bool {
        self.inner.running()
    }

    #[getter]
    fn dropped(&self) -> u64 {
        self.inner.dropped()
    }
}

/// CLOCK_MONOTONIC seconds, the telemetry timestamps' clock (= time.monotonic() on Linux).
#[pyfunction]
fn monotonic() -> f64 {
    clock()
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("STRATEGIES", STRATEGIES.to_vec())?;
    m.add("PRIOR_FREE", PRIOR_FREE.to_vec())?;
    m.add("ORACLE", ORACLE)?;
    m.add("DEFAULT_MAX_ENUMERATE", DEFAULT_MAX_ENUMERATE)?;
    m.add_class::<PySpace>()?;
    m.add_class::<PyRecorded>()?;
    m.add_class::<PyStrategy>()?;
    m.add_class::<PyTelemetry>()?;
    m.add_function(wrap_pyfunction!(simulate, m)?)?;
    m.add_function(wrap_pyfunction!(monotonic, m)?)?;
    Ok(())
}
