//! Raft throughput in-process: committed commands per second of a 3-node
//! cluster driven in one thread with no I/O, and allocations per command.
//!
//!     cargo bench -p chorus-core --bench throughput
//!
//! What is measured and what is not is described in `common/mod.rs` and in
//! docs/measurements.md ("Benchmark: Raft throughput"). The whole cluster (three nodes,
//! the network and the clients) runs on one thread, so commands per second is
//! per core.
//!
//! Run without `--bench` (as `cargo test` does, this target has `test = true`)
//! it only runs every configuration for a few hundred commands, so that CI
//! keeps it compiling and working.

mod common;

use chorus_core::kv::KvStore;
use common::{BenchCluster, BenchMachine, NullMachine, Stats, Transport};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Counts the calling thread's allocations (`alloc`, `alloc_zeroed` and
/// `realloc` calls) and the bytes they ask for, then defers to `System`.
/// Thread-local counters keep the counting cheap and unshared.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static ALLOCATED_BYTES: Cell<u64> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    // `try_with`: allocations during thread teardown are simply not counted.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
    let _ = ALLOCATED_BYTES.try_with(|total| total.set(total.get() + bytes as u64));
}

// SAFETY: every call is forwarded unchanged to `System`; counting allocates
// nothing.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocation_counts() -> (u64, u64) {
    (ALLOCATIONS.with(Cell::get), ALLOCATED_BYTES.with(Cell::get))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Machine {
    Kv,
    Null,
}

/// One row of the table.
struct Case {
    machine: Machine,
    clients: usize,
    transport: Transport,
    warm_up_commands: u64,
    commands: u64,
}

/// CPU time this thread has run, from Linux's `/proc/thread-self/schedstat`
/// (nanoseconds on a CPU); `None` elsewhere. Unlike wall-clock time it leaves
/// out the time other processes (such as builds) held the core.
fn thread_cpu_time() -> Option<Duration> {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = schedstat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

struct Measurement {
    elapsed: Duration,
    cpu: Option<Duration>,
    allocations: u64,
    allocated_bytes: u64,
    stats: Stats,
}

fn measure<S: BenchMachine>(case: &Case) -> Measurement {
    let mut cluster = BenchCluster::<S>::new(case.clients, case.transport, |_| {});
    cluster.run(case.warm_up_commands);
    let before_stats = cluster.stats();
    let (allocations_before, bytes_before) = allocation_counts();
    let cpu_start = thread_cpu_time();
    let start = Instant::now();
    cluster.run(case.commands);
    let elapsed = start.elapsed();
    let cpu = thread_cpu_time().zip(cpu_start).map(|(end, start)| end - start);
    let (allocations_after, bytes_after) = allocation_counts();
    let stats = cluster.stats().since(&before_stats);
    assert_eq!(stats.committed, case.commands, "every measured command was answered");
    Measurement {
        elapsed,
        cpu,
        allocations: allocations_after - allocations_before,
        allocated_bytes: bytes_after - bytes_before,
        stats,
    }
}

fn cases(full: bool) -> Vec<Case> {
    let scale = |commands: u64| if full { commands } else { 300 };
    let case = |machine, clients, transport, commands| Case {
        machine,
        clients,
        transport,
        warm_up_commands: if full { commands / 10 } else { 100 },
        commands: scale(commands),
    };
    use Machine::{Kv, Null};
    use Transport::{InMemory, Wire};
    vec![
        case(Kv, 1, InMemory, 200_000),
        case(Kv, 256, InMemory, 2_000_000),
        case(Kv, 4096, InMemory, 2_000_000),
        case(Kv, 1, Wire, 200_000),
        case(Kv, 256, Wire, 1_000_000),
        case(Kv, 4096, Wire, 1_000_000),
        case(Null, 1, InMemory, 200_000),
        case(Null, 256, InMemory, 2_000_000),
        case(Null, 4096, InMemory, 2_000_000),
    ]
}

/// Keeps a row unless the arguments name other values for one of its
/// columns.
struct Filter {
    clients: Vec<usize>,
    transports: Vec<Transport>,
    machines: Vec<Machine>,
}

impl Filter {
    fn from_arguments(arguments: &[String]) -> Filter {
        let mut filter = Filter { clients: Vec::new(), transports: Vec::new(), machines: Vec::new() };
        for argument in arguments {
            match argument.as_str() {
                "wire" => filter.transports.push(Transport::Wire),
                "in-memory" => filter.transports.push(Transport::InMemory),
                "kv" => filter.machines.push(Machine::Kv),
                "null" => filter.machines.push(Machine::Null),
                other => filter.clients.extend(other.parse::<usize>().ok()),
            }
        }
        filter
    }

    fn keeps(&self, case: &Case) -> bool {
        (self.clients.is_empty() || self.clients.contains(&case.clients))
            && (self.transports.is_empty() || self.transports.contains(&case.transport))
            && (self.machines.is_empty() || self.machines.contains(&case.machine))
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` does not. Other arguments
    // select rows: `kv` or `null`, `in-memory` or `wire`, or a number of
    // clients (`cargo bench -p chorus-core --bench throughput -- 256 wire`).
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let full = arguments.iter().any(|argument| argument == "--bench");
    let filter = Filter::from_arguments(&arguments);
    println!("Raft throughput: 3 nodes in one thread, instant disk, in-memory network,");
    println!("closed-loop clients each proposing a put of a 16-byte value to a 16-byte key.");
    println!("machine kv: the built-in KvStore; null: a state machine that does nothing.");
    if !full {
        println!("(smoke run: a few hundred commands per row; `cargo bench` runs the real one)");
    }
    println!();
    println!(
        "{:<7}  {:>7}  {:<9}  {:>9}  {:>7}  {:>11}  {:>12}  {:>10}  {:>9}  {:>8}  {:>14}  {:>8}  {:>10}",
        "machine",
        "clients",
        "transport",
        "commands",
        "wall s",
        "commands/s",
        "per CPU-s",
        "allocs/cmd",
        "bytes/cmd",
        "msgs/cmd",
        "entries/append",
        "hops/cmd",
        "wire B/cmd"
    );
    let client_allocations = client_allocations_per_command();
    for case in cases(full).iter().filter(|case| filter.keeps(case)) {
        let measurement = match case.machine {
            Machine::Kv => measure::<KvStore>(case),
            Machine::Null => measure::<NullMachine>(case),
        };
        let commands = case.commands as f64;
        let stats = measurement.stats;
        let machine = match case.machine {
            Machine::Kv => "kv",
            Machine::Null => "null",
        };
        let transport = match case.transport {
            Transport::InMemory => "in-memory",
            Transport::Wire => "wire",
        };
        let per_cpu_second = match measurement.cpu {
            Some(cpu) => format!("{:.0}", commands / cpu.as_secs_f64()),
            None => "-".to_string(),
        };
        let wire_bytes = match case.transport {
            Transport::InMemory => "-".to_string(),
            Transport::Wire => format!("{:.0}", stats.wire_bytes as f64 / commands),
        };
        println!(
            "{:<7}  {:>7}  {:<9}  {:>9}  {:>7.2}  {:>11.0}  {:>12}  {:>10.1}  {:>9.0}  {:>8.2}  {:>14.1}  {:>8.3}  {:>10}",
            machine,
            case.clients,
            transport,
            case.commands,
            measurement.elapsed.as_secs_f64(),
            commands / measurement.elapsed.as_secs_f64(),
            per_cpu_second,
            measurement.allocations as f64 / commands,
            measurement.allocated_bytes as f64 / commands,
            stats.messages as f64 / commands,
            stats.entries_sent as f64 / stats.appends_with_entries.max(1) as f64,
            stats.rounds as f64 / commands,
            wire_bytes,
        );
    }
    println!();
    println!("commands/s: wall clock. per CPU-s: per second this thread ran on a CPU (leaves out time other");
    println!("processes held the core). The cluster runs on one thread, so both are per core.");
    println!(
        "Of allocs/cmd, {client_allocations:.1} are the client building and encoding its command (common::command)."
    );
}

/// Allocations the closed-loop client makes per command, outside Raft.
fn client_allocations_per_command() -> f64 {
    const SAMPLES: u64 = 1_000;
    let (before, _) = allocation_counts();
    for sequence in 1..=SAMPLES {
        std::hint::black_box(common::command(7, sequence));
    }
    let (after, _) = allocation_counts();
    (after - before) as f64 / SAMPLES as f64
}
