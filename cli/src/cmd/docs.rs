//! `sealift completions SHELL` and `sealift man`: generated from the clap definition at run
//! time, so they never disagree with what this binary parses.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::CommandFactory;
use serde::Serialize;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::context::{Context, Status};
use crate::output;

/// The command tree as the man pages show it: built, so each subcommand's display name is
/// its full name (`sealift-sync-status`), and without clap's `help` subcommand.
fn command_tree() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

pub fn completions(args: &CompletionsArgs, out: &mut dyn Write) -> Result<Status> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "sealift", out);
    Ok(Status::Success)
}

#[derive(Serialize)]
struct ManDoc {
    directory: PathBuf,
    pages: Vec<PathBuf>,
}

pub fn man(ctx: &Context, args: &ManArgs, out: &mut dyn Write) -> Result<Status> {
    let tree = command_tree();
    let Some(dir) = &args.output else {
        let mut cmd = &tree;
        for name in &args.command {
            cmd = cmd.find_subcommand(name).with_context(|| {
                let known: Vec<&str> = cmd
                    .get_subcommands()
                    .filter(|s| !s.is_hide_set())
                    .map(|s| s.get_name())
                    .collect();
                format!(
                    "{} has no command {name:?} (it has {})",
                    cmd.get_display_name().unwrap_or(cmd.get_name()),
                    known.join(", ")
                )
            })?;
        }
        clap_mangen::Man::new(cmd.clone())
            .render(out)
            .context("writing the man page")?;
        return Ok(Status::Success);
    };
    if !args.command.is_empty() {
        bail!("--output writes every page; leave out COMMAND");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut pages = Vec::new();
    let mut todo = vec![tree];
    while let Some(cmd) = todo.pop() {
        todo.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        let page = clap_mangen::Man::new(cmd);
        let path = dir.join(page.get_filename());
        let mut roff = Vec::new();
        page.render(&mut roff)
            .with_context(|| format!("rendering {}", path.display()))?;
        // Written whole beside it and renamed: a reader never sees half a page.
        let tmp = dir.join(format!(".{}.partial", page.get_filename()));
        std::fs::write(&tmp, &roff).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        pages.push(path);
    }
    pages.sort();
    if ctx.json {
        output::json(
            out,
            &ManDoc {
                directory: dir.clone(),
                pages,
            },
        )?;
    } else if !ctx.quiet {
        writeln!(out, "wrote {} man pages to {}", pages.len(), dir.display())?;
    }
    Ok(Status::Success)
}
