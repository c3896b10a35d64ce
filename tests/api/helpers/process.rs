//! The real binary as a child process, for what only a whole process
//! shows.

use std::time::Duration;

use super::poll::eventually;

/// The real `ratesd` binary on a free loopback port, for what only a whole
/// process shows: signals, exit codes, what it writes to stdout.
pub struct Process {
    pub base: String,
    pub port: u16,
    child: std::process::Child,
}

impl Process {
    /// Starts the binary with `envs` over its defaults (and `RATES_HTTP_ADDR`
    /// on a free port); its stdout goes to `stdout`, its stderr nowhere.
    pub fn spawn(envs: &[(&str, &str)], stdout: std::process::Stdio) -> Self {
        Self::start(
            std::process::Command::new(env!("CARGO_BIN_EXE_ratesd")),
            envs,
            stdout,
        )
    }

    /// As [`Process::spawn`], with command-line arguments (a subcommand).
    pub fn spawn_args(args: &[&str], envs: &[(&str, &str)], stdout: std::process::Stdio) -> Self {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ratesd"));
        command.args(args);
        Self::start(command, envs, stdout)
    }

    /// As [`Process::spawn`], under `ulimit -n files` (soft and hard).
    pub fn spawn_with_file_limit(
        files: u32,
        envs: &[(&str, &str)],
        stdout: std::process::Stdio,
    ) -> Self {
        let mut shell = std::process::Command::new("sh");
        shell.args([
            "-c",
            &format!("ulimit -n {files} && exec \"$0\""),
            env!("CARGO_BIN_EXE_ratesd"),
        ]);
        Self::start(shell, envs, stdout)
    }

    fn start(
        mut command: std::process::Command,
        envs: &[(&str, &str)],
        stdout: std::process::Stdio,
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = command
            .env("RATES_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .envs(envs.iter().copied())
            .stdout(stdout)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ratesd starts");
        Self {
            base: format!("http://127.0.0.1:{port}"),
            port,
            child,
        }
    }

    /// Waits until `/health/ready` says 200.
    pub async fn ready(&self, timeout: Duration) {
        let http = reqwest::Client::new();
        let url = format!("{}/health/ready", self.base);
        eventually("ready", timeout, || async {
            let r = http.get(&url).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
    }

    /// What its `/health/ready` says of its worker (`leader`, `standby`),
    /// `None` when it runs none or does not answer.
    pub async fn worker_role(&self) -> Option<String> {
        let url = format!("{}/health/ready", self.base);
        let body: serde_json::Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
        body["worker"].as_str().map(str::to_owned)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends a signal by name (`TERM`, `KILL`, `STOP`, `CONT`).
    pub fn signal(&self, name: &str) {
        let sent = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{name}");
    }

    /// Waits for the process to exit.
    pub async fn exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = std::sync::Mutex::new(&mut self.child);
        eventually("exit", timeout, || async {
            child.lock().unwrap().try_wait().ok().flatten()
        })
        .await
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A test that failed half-way leaves no server behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
