//! `sealift images-from FILE... [--pin] [-o FILE]`: the images Kubernetes manifests or
//! text lists name, normalised (and pinned to the store's digests with `--pin`). The
//! parsing and pinning are `sealift_layout::image_list`'s; this prints.

use std::io::Write;

use anyhow::{Context as _, Result};
use sealift_layout::image_list::{self, ListedImage};
use serde::Serialize;

use crate::cli::ImagesFromArgs;
use crate::context::{Context, Status};
use crate::output;

#[derive(Serialize)]
struct Listed {
    reference: String,
    host: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
    /// As `pull` files it in the store.
    store: String,
    file: String,
}

pub fn run(ctx: &Context, args: &ImagesFromArgs, out: &mut dyn Write) -> Result<Status> {
    let listed = image_list::read_lists(&args.files)?;
    let images: Vec<_> = listed.iter().map(|l| l.image.clone()).collect();
    let images = if args.pin {
        let store = ctx.open_store()?;
        image_list::pin(&store, &images)?
    } else {
        images
    };
    if let Some(path) = &args.output {
        let files: Vec<String> = args.files.iter().map(|f| f.display().to_string()).collect();
        let comment = format!(
            "Images of {}{}, written by sealift images-from",
            files.join(", "),
            if args.pin {
                ", pinned to the store's digests"
            } else {
                ""
            }
        );
        image_list::write_list(path, &image_list::to_text(&images, &comment))
            .with_context(|| format!("writing {}", path.display()))?;
        if ctx.json {
            output::json(
                out,
                &serde_json::json!({ "path": path, "images": images.len() }),
            )?;
        } else if !ctx.quiet {
            writeln!(
                out,
                "Wrote {} ({})",
                path.display(),
                output::plural(images.len(), "image", "images")
            )?;
        }
        return Ok(Status::Success);
    }
    if ctx.json {
        let docs: Vec<Listed> = listed
            .iter()
            .zip(&images)
            .map(|(ListedImage { file, .. }, i)| Listed {
                reference: i.to_string(),
                host: i.host.clone(),
                repository: i.repo.clone(),
                tag: i.tag.as_ref().map(ToString::to_string),
                digest: i.digest.as_ref().map(ToString::to_string),
                store: i
                    .store_ref()
                    .map(|r| r.to_string())
                    .unwrap_or_else(|_| i.to_string()),
                file: file.display().to_string(),
            })
            .collect();
        output::json(out, &docs)?;
        return Ok(Status::Success);
    }
    for i in &images {
        writeln!(out, "{i}")?;
    }
    Ok(Status::Success)
}
