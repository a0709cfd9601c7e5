//! The launcher contract: the environment torchrun, Slurm (through `srun` wrappers) and
//! Kubernetes PyTorchJobs give every worker process.

use crate::DistError;

/// Where this process stands in a multi-process run, from the torchrun environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub world_size: usize,
    /// Rank on this machine: which GPU a CUDA worker takes.
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// torchrun's agent already hosts the TCPStore at MASTER_ADDR:MASTER_PORT; every worker,
    /// rank 0 included, connects to it as a client.
    pub agent_store: bool,
    /// torchrun's restart count: keys of an earlier attempt in the agent's store are not ours.
    pub restart_count: u32,
}

/// The variables a launcher sets, by name.
pub const RANK: &str = "RANK";
pub const WORLD_SIZE: &str = "WORLD_SIZE";
pub const LOCAL_RANK: &str = "LOCAL_RANK";
pub const MASTER_ADDR: &str = "MASTER_ADDR";
pub const MASTER_PORT: &str = "MASTER_PORT";

impl Launch {
    /// The launch this process is part of: `None` when no launcher set RANK or WORLD_SIZE, or
    /// when WORLD_SIZE is 1 (a single process needs no collectives).
    pub fn from_env() -> Result<Option<Launch>, DistError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`Launch::from_env`] over any source of variables (tests pass a map).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>, DistError> {
        let rank = get(RANK);
        let world = get(WORLD_SIZE);
        if rank.is_none() && world.is_none() {
            return Ok(None);
        }
        let world_size = parse_count(WORLD_SIZE, world.as_deref(), &get)?;
        if world_size == 0 {
            return Err(env_error(
                WORLD_SIZE,
                "0",
                "it is the number of processes, at least 1",
            ));
        }
        let rank = match rank {
            Some(r) => parse_count(RANK, Some(&r), &get)?,
            // One process that says WORLD_SIZE=1 and nothing else is an ordinary run.
            None if world_size == 1 => 0,
            None => parse_count(RANK, None, &get)?,
        };
        if rank >= world_size {
            return Err(env_error(
                RANK,
                &rank.to_string(),
                &format!("ranks run from 0 to WORLD_SIZE - 1 = {}", world_size - 1),
            ));
        }
        if world_size == 1 {
            return Ok(None);
        }
        let local_rank = match get(LOCAL_RANK) {
            Some(v) => parse_count(LOCAL_RANK, Some(&v), &get)?,
            None => rank,
        };
        let master_addr = get(MASTER_ADDR)
            .filter(|a| !a.trim().is_empty())
            .ok_or_else(|| DistError::Env {
                var: MASTER_ADDR.into(),
                why: "is not set".into(),
                fix: "set MASTER_ADDR to the host name or address of the machine running rank 0 \
                      (127.0.0.1 on one machine), or let `ardpipe run --nproc N` start the workers"
                    .into(),
            })?
            .trim()
            .to_string();
        let port = get(MASTER_PORT).ok_or_else(|| DistError::Env {
            var: MASTER_PORT.into(),
            why: "is not set".into(),
            fix: "set MASTER_PORT to a free TCP port on the rank-0 machine (torchrun uses 29500)"
                .into(),
        })?;
        let master_port = match port.trim().parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(env_error(
                    MASTER_PORT,
                    &port,
                    "it must be a TCP port number from 1 to 65535",
                ));
            }
        };
        let agent_store = get("TORCHELASTIC_USE_AGENT_STORE")
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        let restart_count = get("TORCHELASTIC_RESTART_COUNT")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Ok(Some(Launch {
            rank,
            world_size,
            local_rank,
            master_addr,
            master_port,
            agent_store,
            restart_count,
        }))
    }

    /// Whether this process hosts the rendezvous store.
    pub fn hosts_store(&self) -> bool {
        self.rank == 0 && !self.agent_store
    }
}

fn parse_count(
    var: &str,
    value: Option<&str>,
    get: &impl Fn(&str) -> Option<String>,
) -> Result<usize, DistError> {
    let Some(v) = value else {
        let other = if var == RANK { WORLD_SIZE } else { RANK };
        return Err(DistError::Env {
            var: var.into(),
            why: format!(
                "is not set, but {other}={} is",
                get(other).unwrap_or_default()
            ),
            fix: "a launcher sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT together: \
                  start the workers with torchrun or `ardpipe run --nproc N`, or unset both \
                  for a single-process run"
                .into(),
        });
    };
    v.trim()
        .parse::<usize>()
        .map_err(|_| env_error(var, v, "it must be a whole number"))
}

fn env_error(var: &str, value: &str, why: &str) -> DistError {
    DistError::Env {
        var: var.into(),
        why: format!("is {value:?}: {why}"),
        fix: "check the launcher's settings (torchrun --nnodes/--nproc-per-node, or the job's \
              environment)"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Option<Launch>, DistError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Launch::from_vars(|k| m.get(k).cloned())
    }

    fn message(vars: &[(&str, &str)]) -> String {
        launch(vars).unwrap_err().to_string()
    }

    const GOOD: &[(&str, &str)] = &[
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29500"),
    ];

    #[test]
    fn no_launcher_and_a_world_of_one_are_single_process_runs() {
        assert_eq!(launch(&[]).unwrap(), None);
        assert_eq!(launch(&[("WORLD_SIZE", "1")]).unwrap(), None);
        assert_eq!(launch(&[("RANK", "0"), ("WORLD_SIZE", "1")]).unwrap(), None);
    }

    #[test]
    fn the_torchrun_contract_is_read() {
        let l = launch(GOOD).unwrap().unwrap();
        assert_eq!((l.rank, l.world_size, l.local_rank), (1, 2, 1));
        assert_eq!(
            (l.master_addr.as_str(), l.master_port),
            ("127.0.0.1", 29500)
        );
        assert!(!l.hosts_store());
        let mut agent = GOOD.to_vec();
        agent.extend([
            ("RANK", "0"),
            ("LOCAL_RANK", "3"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
        ]);
        // The later RANK wins in the map: rank 0, but torchrun's agent hosts the store.
        let l = launch(&agent).unwrap().unwrap();
        assert_eq!((l.rank, l.local_rank, l.restart_count), (0, 3, 2));
        assert!(l.agent_store && !l.hosts_store());
    }

    #[test]
    fn a_broken_environment_says_which_variable_and_how_to_fix_it() {
        let m = message(&[("RANK", "0")]);
        assert!(m.contains("WORLD_SIZE is not set, but RANK=0 is"), "{m}");
        assert!(m.contains("--nproc"), "{m}");
        let m = message(&[("WORLD_SIZE", "2")]);
        assert!(m.contains("RANK is not set, but WORLD_SIZE=2 is"), "{m}");
        let m = message(&[("RANK", "2"), ("WORLD_SIZE", "2")]);
        assert!(
            m.contains("RANK is \"2\": ranks run from 0 to WORLD_SIZE - 1 = 1"),
            "{m}"
        );
        let m = message(&[("RANK", "one"), ("WORLD_SIZE", "2")]);
        assert!(m.contains("whole number"), "{m}");
        let m = message(&[("RANK", "0"), ("WORLD_SIZE", "0")]);
        assert!(m.contains("at least 1"), "{m}");
        let m = message(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "1")]);
        assert!(m.contains("MASTER_ADDR is not set"), "{m}");
        let m = message(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h")]);
        assert!(m.contains("MASTER_PORT is not set"), "{m}");
        let mut bad_port = GOOD.to_vec();
        bad_port.push(("MASTER_PORT", "70000"));
        let m = message(&bad_port);
        assert!(m.contains("from 1 to 65535"), "{m}");
    }
}
