//! `picloud serve | dev | migrate | user create`

use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command};
use picloud_core::config::{Config, LogFormat, SETTINGS};
use picloud_core::crypto;
use picloud_store::NewUser;

/// Counts allocations per thread, so a script run that holds too much memory is stopped
/// (`PICLOUD_SCRIPT_MAX_MEMORY_BYTES`).
#[global_allocator]
static ALLOCATOR: picloud_alloc::CountingAllocator = picloud_alloc::CountingAllocator;

fn cli() -> Command {
    let mut cmd = Command::new("picloud")
        .about("A self-hosted serverless backend in one binary")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .subcommand(Command::new("serve").about("Run the server"))
        .subcommand(Command::new("dev").about(
            "Run the server in dev mode: ./picloud-data, the development key, a set-up link",
        ))
        .subcommand(Command::new("migrate").about("Apply database migrations and exit"))
        .subcommand(Command::new("keygen").about("Print a new random PICLOUD_SECRET_KEY"))
        .subcommand(
            Command::new("rotate-key")
                .about(
                    "Re-wrap every data key under PICLOUD_NEW_SECRET_KEY (resumable; servers \
                     keep serving), verify, then make it the instance's key",
                )
                .arg(
                    Arg::new("batch-size")
                        .long("batch-size")
                        .value_parser(clap::value_parser!(u32).range(1..=10_000))
                        .default_value("100"),
                )
                .arg(
                    Arg::new("forget-old")
                        .long("forget-old")
                        .action(ArgAction::SetTrue)
                        .help(
                            "after every server runs with the new key as PICLOUD_SECRET_KEY: \
                             clear the old key's wrappings",
                        ),
                ),
        )
        .subcommand(
            Command::new("user")
                .about("Manage users")
                .subcommand_required(true)
                .subcommand(
                    Command::new("create")
                        .about("Create a user")
                        .arg(Arg::new("email").long("email").required(true))
                        .arg(Arg::new("password").long("password").required(true))
                        .arg(Arg::new("admin").long("admin").action(ArgAction::SetTrue)),
                ),
        );
    // Every setting is also a flag: PICLOUD_MAX_REQUEST_BODY_BYTES → --max-request-body-bytes.
    for setting in SETTINGS {
        cmd = cmd.arg(
            Arg::new(setting.env)
                .long(setting.flag())
                .value_name("VALUE")
                .help(format!("{} [env: {}]", setting.help, setting.env))
                .global(true),
        );
    }
    cmd
}

fn load_config(matches: &ArgMatches, dev: bool) -> Result<Config, String> {
    let lookup = |var: &str| -> Option<String> {
        let flag = matches
            .subcommand()
            .and_then(|(_, sub)| sub.subcommand().map_or(Some(sub), |(_, s)| Some(s)))
            .and_then(|m| m.try_get_one::<String>(var).ok().flatten().cloned());
        flag.or_else(|| std::env::var(var).ok())
            .or_else(|| (dev && var == "PICLOUD_DEV_MODE").then(|| "true".to_owned()))
    };
    let config = Config::load(&lookup).map_err(|e| e.to_string())?;
    Ok(config)
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

async fn serve(config: Config) -> Result<(), String> {
    if config.dev_mode && config.secret_key.is_none() {
        tracing::warn!(
            "DEV MODE: using the deterministic development key. Anything encrypted is readable \
             by anyone with the source code. Never use dev mode for real data."
        );
    }
    let started = picloud::start(config).await.map_err(|e| e.to_string())?;
    println!("listening on http://{}", started.addr);
    if let Some(addr) = started.metrics_addr {
        tracing::info!("metrics (no token needed) on http://{addr}/metrics");
    }
    if let Some(token) = &started.setup_token {
        println!(
            "no user exists yet: create the first admin at http://{}/_/?token={token}",
            started.addr
        );
    }
    started
        .run_until(shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))
}

async fn create_user(config: Config, m: &ArgMatches) -> Result<(), String> {
    let email = m.get_one::<String>("email").cloned().unwrap_or_default();
    let password = m.get_one::<String>("password").cloned().unwrap_or_default();
    if password.chars().count() < 8 {
        return Err("--password: must be at least 8 characters".into());
    }
    let email = picloud_core::email::normalize(&email).map_err(|e| format!("--email: {e}"))?;
    let store = picloud::open_store(&config)
        .await
        .map_err(|e| e.to_string())?;
    let hash = tokio::task::spawn_blocking(move || crypto::hash_password(&password))
        .await
        .map_err(|e| e.to_string())?;
    let user = store
        .create_user(NewUser {
            email,
            password_hash: hash,
            is_admin: m.get_flag("admin"),
        })
        .await
        .map_err(|e| format!("user create: {e}"))?;
    store.close().await;
    println!("created user {} ({})", user.id, user.email);
    Ok(())
}

async fn rotate_key(config: Config, m: &ArgMatches) -> Result<(), String> {
    use picloud::rotate::{self, RotateOptions, RotateOutcome};
    let current = config.effective_secret_key().map_err(|e| e.to_string())?;
    let store = picloud::open_store(&config)
        .await
        .map_err(|e| e.to_string())?;
    let result = if m.get_flag("forget-old") {
        rotate::forget_old(store.as_ref(), &current)
            .await
            .map(|n| format!("cleared {n} wrappings by the old key; it opens nothing now"))
    } else {
        let Some(new) = config.secrets.new_key.clone() else {
            store.close().await;
            return Err(
                "PICLOUD_NEW_SECRET_KEY: required (generate one with `picloud keygen`)".into(),
            );
        };
        let options = RotateOptions {
            batch_size: m.get_one::<u32>("batch-size").copied().unwrap_or(100),
            stop_after_batches: None,
        };
        rotate::rotate_key(store.as_ref(), &current, &new, options)
            .await
            .map(|outcome| match outcome {
                RotateOutcome::Done {
                    rewrapped,
                    verified,
                } => format!(
                    "rotated: {rewrapped} data keys re-wrapped, {verified} verified; the \
                     instance's key is now PICLOUD_NEW_SECRET_KEY. Restart every server with \
                     it as PICLOUD_SECRET_KEY, then run `picloud rotate-key --forget-old`"
                ),
                RotateOutcome::Stopped { rewrapped } => {
                    format!("stopped after {rewrapped} data keys; run again to finish")
                }
            })
    };
    store.close().await;
    let line = result.map_err(|e| e.to_string())?;
    println!("{line}");
    Ok(())
}

async fn run(matches: ArgMatches) -> Result<(), String> {
    let (name, sub) = matches.subcommand().unwrap_or(("serve", &matches));
    if name == "keygen" {
        println!("{}", crypto::SecretKey::generate().to_base64());
        return Ok(());
    }
    let config = load_config(&matches, name == "dev")?;
    init_logging(&config);
    match name {
        "serve" | "dev" => serve(config).await,
        "migrate" => {
            let store = picloud::open_store(&config)
                .await
                .map_err(|e| e.to_string())?;
            store.close().await;
            println!("migrations applied");
            Ok(())
        }
        "rotate-key" => rotate_key(config, sub).await,
        "user" => match sub.subcommand() {
            Some(("create", m)) => create_user(config, m).await,
            _ => Err("user: unknown subcommand".into()),
        },
        other => Err(format!("unknown command {other}")),
    }
}

fn main() -> ExitCode {
    picloud_alloc::return_freed_memory_promptly();
    let matches = cli().get_matches();
    let runtime = match picloud::runtime(None) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(matches)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(line) => {
            eprintln!("error: {line}");
            ExitCode::from(2)
        }
    }
}
