//! GPU telemetry sampler: a background thread reads SM clock, temperature and power at a
//! fixed rate into a ring buffer that Python drains during sustained runs.
//!
//! Timestamps are CLOCK_MONOTONIC seconds, the clock behind Python's `time.monotonic()` on
//! Linux, so samples line up with the harness's timings without any offset estimation.
//!
//! Sources: NVML (libnvidia-ml.so.1 opened at run time, never linked: the engine must load
//! on machines without the NVIDIA driver), AMD's sysfs hwmon files, and a deterministic
//! `synthetic` source for tests. Where none exists the status says "absent" and no sample is
//! ever produced: a missing sensor must not read as zeros. A reading that fails on one
//! sample is NaN in that sample.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: f64,
    pub sm_mhz: f64,
    pub temp_c: f64,
    pub power_w: f64,
}

/// Seconds on CLOCK_MONOTONIC (same clock as Python's time.monotonic()).
pub fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid, exclusive pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

// ---------------------------------------------------------------- NVML (the FFI edge)

mod nvml {
    use std::ffi::c_void;

    type Device = *mut c_void;
    type InitFn = unsafe extern "C" fn() -> i32;
    type HandleFn = unsafe extern "C" fn(u32, *mut Device) -> i32;
    type ClockFn = unsafe extern "C" fn(Device, u32, *mut u32) -> i32;
    type TempFn = unsafe extern "C" fn(Device, u32, *mut u32) -> i32;
    type PowerFn = unsafe extern "C" fn(Device, *mut u32) -> i32;

    const NVML_SUCCESS: i32 = 0;
    const NVML_CLOCK_SM: u32 = 1;
    const NVML_TEMPERATURE_GPU: u32 = 0;

    pub struct Nvml {
        // Keeps the library mapped for as long as the function pointers below are used.
        _lib: libloading::Library,
        // The device handle, held as an integer so the struct is Send without an unsafe impl;
        // NVML handles are process-wide and thread-safe.
        device: usize,
        clock: ClockFn,
        temp: TempFn,
        power: PowerFn,
        shutdown: InitFn,
    }

    impl Nvml {
        pub fn open(index: u32) -> Result<Nvml, String> {
            // SAFETY: loading NVML runs its initialisers, which have no preconditions.
            let lib = unsafe { libloading::Library::new("libnvidia-ml.so.1") }
                .map_err(|e| format!("NVML not loadable ({e})"))?;
            // SAFETY: the symbol types match the NVML headers (nvml.h, API v2).
            let (init, handle, clock, temp, power, shutdown) = unsafe {
                let sym = |name: &[u8]| -> Result<*mut c_void, String> {
                    lib.get::<*mut c_void>(name)
                        .map(|s| *s)
                        .map_err(|e| format!("NVML lacks {}: {e}", String::from_utf8_lossy(name)))
                };
                (
                    std::mem::transmute::<*mut c_void, InitFn>(sym(b"nvmlInit_v2\0")?),
                    std::mem::transmute::<*mut c_void, HandleFn>(sym(
                        b"nvmlDeviceGetHandleByIndex_v2\0",
                    )?),
                    std::mem::transmute::<*mut c_void, ClockFn>(sym(b"nvmlDeviceGetClockInfo\0")?),
                    std::mem::transmute::<*mut c_void, TempFn>(sym(b"nvmlDeviceGetTemperature\0")?),
                    std::mem::transmute::<*mut c_void, PowerFn>(sym(b"nvmlDeviceGetPowerUsage\0")?),
                    std::mem::transmute::<*mut c_void, InitFn>(sym(b"nvmlShutdown\0")?),
                )
            };
            // SAFETY: plain NVML calls with valid out-pointers.
            let rc = unsafe { init() };
            if rc != NVML_SUCCESS {
                return Err(format!(
                    "nvmlInit_v2 failed (NVML error {rc}); is the NVIDIA driver loaded?"
                ));
            }
            let mut device: Device = std::ptr::null_mut();
            // SAFETY: as above.
            let rc = unsafe { handle(index, &mut device) };
            if rc != NVML_SUCCESS {
                // SAFETY: balances the successful nvmlInit_v2.
                unsafe { shutdown() };
                return Err(format!(
                    "NVML has no GPU {index} (NVML error {rc}); pick an index below the GPU count"
                ));
            }
            Ok(Nvml {
                _lib: lib,
                device: device as usize,
                clock,
                temp,
                power,
                shutdown,
            })
        }

        fn read(&self, f: impl FnOnce(Device, *mut u32) -> i32) -> Option<u32> {
            let mut v = 0u32;
            (f(self.device as Device, &mut v) == NVML_SUCCESS).then_some(v)
        }

        /// (SM MHz, GPU degrees C, watts), each None if NVML refused it.
        pub fn sample(&self) -> (Option<f64>, Option<f64>, Option<f64>) {
            // SAFETY: the handle came from NVML and stays valid until nvmlShutdown (Drop);
            // each call writes one u32 through a valid pointer.
            unsafe {
                (
                    self.read(|d, p| (self.clock)(d, NVML_CLOCK_SM, p))
                        .map(f64::from),
                    self.read(|d, p| (self.temp)(d, NVML_TEMPERATURE_GPU, p))
                        .map(f64::from),
                    self.read(|d, p| (self.power)(d, p))
                        .map(|mw| f64::from(mw) / 1000.0),
                )
            }
        }
    }

    impl Drop for Nvml {
        fn drop(&mut self) {
            // SAFETY: balances nvmlInit_v2 from `open`.
            unsafe { (self.shutdown)() };
        }
    }
}

// ---------------------------------------------------------------- AMD sysfs hwmon

/// One open sysfs file, re-read from offset 0 each sample (cheaper than reopening).
struct SysFile(File);

impl SysFile {
    fn open(path: PathBuf) -> Option<SysFile> {
        File::open(path).ok().map(SysFile)
    }

    fn read(&mut self) -> Option<f64> {
        let mut text = String::new();
        self.0.seek(SeekFrom::Start(0)).ok()?;
        self.0.read_to_string(&mut text).ok()?;
        text.trim().parse::<f64>().ok()
    }
}

pub struct Hwmon {
    pub dir: PathBuf,
    freq: Option<SysFile>,  // Hz
    temp: Option<SysFile>,  // millidegrees C
    power: Option<SysFile>, // microwatts
}

impl Hwmon {
    /// The `index`-th AMD GPU (vendor 0x1002) under `root` (normally /sys/class/drm) that
    /// has a hwmon directory with at least one of the three sensors.
    pub fn discover(root: &Path, index: usize) -> Result<Hwmon, String> {
        let mut cards: Vec<PathBuf> = std::fs::read_dir(root)
            .map_err(|e| format!("no {} ({e})", root.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.strip_prefix("card")
                        .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
                })
            })
            .collect();
        cards.sort();
        let mut found = Vec::new();
        for card in cards {
            let vendor = std::fs::read_to_string(card.join("device/vendor")).unwrap_or_default();
            if vendor.trim() != "0x1002" {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(card.join("device/hwmon")) else {
                continue;
            };
            let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            dirs.sort();
            for dir in dirs {
                let h = Hwmon {
                    freq: SysFile::open(dir.join("freq1_input")),
                    temp: SysFile::open(dir.join("temp1_input")),
                    power: SysFile::open(dir.join("power1_average"))
                        .or_else(|| SysFile::open(dir.join("power1_input"))),
                    dir,
                };
                if h.freq.is_some() || h.temp.is_some() || h.power.is_some() {
                    found.push(h);
                    break;
                }
            }
        }
        let n = found.len();
        found.into_iter().nth(index).ok_or_else(|| {
            format!(
                "no AMD GPU {index} with hwmon sensors under {} ({n} found)",
                root.display()
            )
        })
    }

    pub fn sample(&mut self) -> (Option<f64>, Option<f64>, Option<f64>) {
        (
            self.freq
                .as_mut()
                .and_then(SysFile::read)
                .map(|hz| hz / 1e6),
            self.temp
                .as_mut()
                .and_then(SysFile::read)
                .map(|m| m / 1000.0),
            self.power
                .as_mut()
                .and_then(SysFile::read)
                .map(|uw| uw / 1e6),
        )
    }
}

// ---------------------------------------------------------------- sources

pub enum Source {
    Nvml(nvml::Nvml),
    Hwmon(Hwmon),
    /// Deterministic values for tests: sm = 1000 + n % 100, temp = 50 + n % 10, power = 100.
    Synthetic(u64),
}

impl Source {
    pub fn name(&self) -> &'static str {
        match self {
            Source::Nvml(_) => "nvml",
            Source::Hwmon(_) => "hwmon",
            Source::Synthetic(_) => "synthetic",
        }
    }

    fn read(&mut self) -> Sample {
        let (sm, temp, power) = match self {
            Source::Nvml(n) => n.sample(),
            Source::Hwmon(h) => h.sample(),
            Source::Synthetic(n) => {
                *n += 1;
                (
                    Some(1000.0 + (*n % 100) as f64),
                    Some(50.0 + (*n % 10) as f64),
                    Some(100.0),
                )
            }
        };
        let nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
        Sample {
            t: monotonic(),
            sm_mhz: nan(sm),
            temp_c: nan(temp),
            power_w: nan(power),
        }
    }

    /// Open `kind` ("auto", "nvml", "hwmon", "synthetic", "none"). Ok(None) with the reasons
    /// when "auto" finds nothing; an explicit kind that is unavailable is an error.
    pub fn open(
        kind: &str,
        device: u32,
        hwmon_root: &Path,
    ) -> Result<(Option<Source>, String), String> {
        match kind {
            "nvml" => nvml::Nvml::open(device).map(|n| (Some(Source::Nvml(n)), "nvml".into())),
            "hwmon" => Hwmon::discover(hwmon_root, device as usize)
                .map(|h| (Some(Source::Hwmon(h)), "hwmon".into())),
            "synthetic" => Ok((Some(Source::Synthetic(0)), "synthetic (test source)".into())),
            "none" => Ok((None, "absent: telemetry disabled (source='none')".into())),
            "auto" => {
                let nv = match nvml::Nvml::open(device) {
                    Ok(n) => return Ok((Some(Source::Nvml(n)), "nvml".into())),
                    Err(e) => e,
                };
                let amd = match Hwmon::discover(hwmon_root, device as usize) {
                    Ok(h) => return Ok((Some(Source::Hwmon(h)), "hwmon".into())),
                    Err(e) => e,
                };
                Ok((None, format!("absent: {nv}; {amd}")))
            }
            other => Err(format!(
                "unknown telemetry source {other:?}; use 'auto', 'nvml', 'hwmon', 'synthetic' or 'none'"
            )),
        }
    }
}

// ---------------------------------------------------------------- ring buffer + thread

pub struct Ring {
    buf: Vec<Sample>,
    capacity: usize,
    head: usize, // next write position
    len: usize,
    pub dropped: u64, // overwritten before being read
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        Ring {
            buf: Vec::with_capacity(capacity.min(1 << 20)),
            capacity: capacity.max(1),
            head: 0,
            len: 0,
            dropped: 0,
        }
    }

    pub fn push(&mut self, s: Sample) {
        if self.buf.len() < self.capacity {
            self.buf.push(s);
        } else {
            self.buf[self.head] = s;
        }
        self.head = (self.head + 1) % self.capacity;
        if self.len == self.capacity {
            self.dropped += 1;
        } else {
            self.len += 1;
        }
    }

    /// Samples oldest first; `clear` empties the ring (a drain).
    pub fn snapshot(&mut self, clear: bool) -> Vec<Sample> {
        let start = (self.head + self.capacity - self.len) % self.capacity;
        let out = (0..self.len)
            .map(|k| self.buf[(start + k) % self.capacity])
            .collect();
        if clear {
            self.len = 0;
        }
        out
    }
}

struct Shared {
    ring: Mutex<Ring>,
    stop: AtomicBool,
}

fn lock(m: &Mutex<Ring>) -> MutexGuard<'_, Ring> {
    // A panic elsewhere cannot leave a Ring inconsistent (push is total), so a poisoned lock
    // is still usable; never propagate the poison as a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Sampler {
    shared: Arc<Shared>,
    source: Option<Source>,
    thread: Option<JoinHandle<Source>>,
    period: Duration,
    /// Kept apart from `source`, which lives in the thread while it runs.
    name: Option<&'static str>,
    pub status: String,
}

impl Sampler {
    pub fn new(
        source: Option<Source>,
        status: String,
        rate_hz: f64,
        capacity: usize,
    ) -> Result<Sampler, String> {
        if !(rate_hz > 0.0 && rate_hz <= 100_000.0) {
            return Err(format!("rate_hz must be in (0, 100000], got {rate_hz}"));
        }
        if capacity == 0 {
            return Err("capacity must be at least 1 sample".into());
        }
        Ok(Sampler {
            shared: Arc::new(Shared {
                ring: Mutex::new(Ring::new(capacity)),
                stop: AtomicBool::new(false),
            }),
            thread: None,
            period: Duration::from_secs_f64(1.0 / rate_hz),
            name: source.as_ref().map(Source::name),
            source,
            status,
        })
    }

    pub fn source_name(&self) -> Option<&'static str> {
        self.name
    }

    pub fn running(&self) -> bool {
        self.thread.is_some()
    }

    /// Start sampling. False (and nothing started) when the source is absent.
    pub fn start(&mut self) -> Result<bool, String> {
        if self.thread.is_some() {
            return Ok(true);
        }
        let Some(mut source) = self.source.take() else {
            return Ok(false);
        };
        self.shared.stop.store(false, Ordering::SeqCst);
        let shared = self.shared.clone();
        let period = self.period;
        let handle = std::thread::Builder::new()
            .name("clgemm-telemetry".into())
            .spawn(move || {
                // Fixed-rate schedule on absolute deadlines, so jitter does not accumulate;
                // after a stall it skips missed slots instead of bursting to catch up.
                let mut next = std::time::Instant::now();
                while !shared.stop.load(Ordering::Relaxed) {
                    let s = source.read();
                    lock(&shared.ring).push(s);
                    next += period;
                    let now = std::time::Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
                source
            })
            .map_err(|e| format!("cannot start the telemetry thread: {e}"))?;
        self.thread = Some(handle);
        Ok(true)
    }

    pub fn stop(&mut self) -> Result<(), String> {
        let Some(handle) = self.thread.take() else {
            return Ok(());
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        match handle.join() {
            Ok(source) => {
                self.source = Some(source);
                Ok(())
            }
            Err(_) => {
                Err("the telemetry thread failed; its samples up to the failure are kept".into())
            }
        }
    }

    pub fn samples(&self, clear: bool) -> Vec<Sample> {
        lock(&self.shared.ring).snapshot(clear)
    }

    pub fn dropped(&self) -> u64 {
        lock(&self.shared.ring).dropped
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest_and_counts_drops() {
        let mut r = Ring::new(3);
        for i in 0..5 {
            r.push(Sample {
                t: f64::from(i),
                sm_mhz: 0.0,
                temp_c: 0.0,
                power_w: 0.0,
            });
        }
        let ts: Vec<f64> = r.snapshot(false).iter().map(|s| s.t).collect();
        assert_eq!(ts, vec![2.0, 3.0, 4.0]);
        assert_eq!(r.dropped, 2);
        assert_eq!(r.snapshot(true).len(), 3);
        assert!(r.snapshot(false).is_empty());
        r.push(Sample {
            t: 9.0,
            sm_mhz: 0.0,
            temp_c: 0.0,
            power_w: 0.0,
        });
        assert_eq!(r.snapshot(false)[0].t, 9.0);
    }

    #[test]
    fn synthetic_sampler_runs_at_about_its_rate() {
        let (src, status) = Source::open("synthetic", 0, Path::new("/nonexistent")).unwrap();
        let mut s = Sampler::new(src, status, 1000.0, 10_000).unwrap();
        let t0 = monotonic();
        assert!(s.start().unwrap());
        assert_eq!(s.source_name(), Some("synthetic"));
        std::thread::sleep(Duration::from_millis(200));
        s.stop().unwrap();
        let t1 = monotonic();
        let got = s.samples(false);
        assert!(
            got.len() > 50 && got.len() <= 220,
            "{} samples in 200 ms at 1 kHz",
            got.len()
        );
        assert!(got.windows(2).all(|w| w[0].t < w[1].t));
        assert!(got[0].t >= t0 && got[got.len() - 1].t <= t1);
        assert_eq!(got[0].sm_mhz, 1001.0);
        // restartable: the source came back from the thread
        assert!(s.start().unwrap());
        s.stop().unwrap();
    }

    #[test]
    fn absent_source_is_reported_not_zeroed() {
        let (src, status) = Source::open("hwmon", 0, Path::new("/nonexistent"))
            .unwrap_or_else(|e| (None, format!("absent: {e}")));
        assert!(src.is_none() && status.starts_with("absent"));
        let mut s = Sampler::new(None, status, 1000.0, 10).unwrap();
        assert!(!s.start().unwrap());
        assert!(s.samples(false).is_empty());
        assert!(Source::open("bogus", 0, Path::new("/")).is_err());
        assert!(Sampler::new(None, String::new(), 0.0, 10).is_err());
    }

    #[test]
    fn hwmon_reads_a_fake_sysfs_tree() {
        let root = std::env::temp_dir().join(format!("clgemm-hwmon-{}", std::process::id()));
        let dev = root.join("card0/device");
        let hw = dev.join("hwmon/hwmon3");
        std::fs::create_dir_all(&hw).unwrap();
        std::fs::create_dir_all(root.join("card0-DP-1")).unwrap();
        std::fs::write(dev.join("vendor"), "0x1002\n").unwrap();
        std::fs::write(hw.join("freq1_input"), "1500000000\n").unwrap();
        std::fs::write(hw.join("temp1_input"), "61000\n").unwrap();
        std::fs::write(hw.join("power1_average"), "187000000\n").unwrap();
        let mut h = Hwmon::discover(&root, 0).unwrap();
        assert_eq!(h.sample(), (Some(1500.0), Some(61.0), Some(187.0)));
        std::fs::write(hw.join("temp1_input"), "62000\n").unwrap();
        assert_eq!(h.sample().1, Some(62.0));
        assert!(Hwmon::discover(&root, 1).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
