//! deploy/Dockerfile: it copies exactly the workspace's service binaries and CLI, from paths
//! that exist (in the repository, or in the builder's `cargo build --release` output); its
//! images are pinned; the runtime is small and runs as a non-root user.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use kubegate_deploy_tests::dockerfile::{self, Stage, image_parts};
use kubegate_deploy_tests::{deploy_dir, repo_root, tools};

/// The binaries the image must hold: the three services and the admin CLI.
const IMAGE_BINARIES: &[&str] = &["kubegate-identity", "kubegate-kubeconfig", "kubegate-proxy", "kubegate"];

/// Where the runtime image keeps them (the Deployments' `command:` uses these paths).
const BIN_DIR: &str = "/usr/local/bin";

fn stages() -> Vec<Stage> {
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).expect("read deploy/Dockerfile");
    let stages = dockerfile::stages(&text);
    assert!(stages.len() >= 2, "deploy/Dockerfile must be multi-stage (a builder and a runtime)");
    stages
}

fn builder<'a>(stages: &'a [Stage], name: &str) -> &'a Stage {
    stages
        .iter()
        .find(|s| s.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("COPY --from={name}: no stage is named {name}"))
}

/// The binaries the runtime stage copies out of a build stage: (stage, source path, name).
fn copied_binaries(stages: &[Stage]) -> Vec<(String, String, String)> {
    let runtime = stages.last().unwrap();
    runtime
        .copies()
        .into_iter()
        .filter_map(|c| c.from.clone().map(|from| (from, c)))
        .flat_map(|(from, c)| {
            c.sources
                .into_iter()
                .map(move |s| (from.clone(), s.clone(), s.rsplit('/').next().unwrap_or_default().to_string()))
        })
        .collect()
}

#[test]
fn the_image_holds_exactly_the_workspace_binaries_it_is_meant_to() {
    let stages = stages();
    let metadata = tools::cargo_metadata();
    let workspace_bins = tools::workspace_binaries(&metadata);
    let copied: BTreeSet<String> = copied_binaries(&stages).into_iter().map(|(_, _, name)| name).collect();
    let wanted: BTreeSet<String> = IMAGE_BINARIES.iter().map(|s| s.to_string()).collect();
    assert_eq!(copied, wanted, "deploy/Dockerfile must copy the three services and the CLI, nothing else");

    let missing: Vec<&String> = copied.iter().filter(|b| !workspace_bins.contains(*b)).collect();
    assert!(
        missing.is_empty(),
        "deploy/Dockerfile copies {missing:?}, but no workspace package defines a bin target of that \
         name (cargo metadata --no-deps finds only {workspace_bins:?}). Each must be a [[bin]] (or \
         the default binary) of its package: kubegate-proxy in services/proxy, kubegate in \
         services/cli (package kubegate-cli)."
    );

    // The builder builds exactly those binaries.
    for (from, _, _) in copied_binaries(&stages) {
        let stage = builder(&stages, &from);
        let built: BTreeSet<String> = stage
            .runs()
            .filter(|r| r.args.contains("cargo build"))
            .flat_map(|r| dockerfile::cargo_bins(&r.args))
            .collect();
        assert_eq!(built, wanted, "stage {from} must `cargo build --bin` each binary the image copies");
    }
}

#[test]
fn every_path_the_dockerfile_copies_exists() {
    let stages = stages();
    let root = repo_root();
    let mut context_sources = Vec::new();
    for stage in &stages {
        for copy in stage.copies() {
            match &copy.from {
                None => {
                    for source in &copy.sources {
                        assert!(
                            !source.contains("..") && !source.starts_with('/'),
                            "line {}: COPY {source} must be a path inside the build context",
                            copy.line
                        );
                        assert!(
                            root.join(source).exists(),
                            "line {}: COPY {source}: no such path in the repository (the build context is \
                             the repository root)",
                            copy.line
                        );
                        context_sources.push(source.clone());
                    }
                }
                Some(from) => {
                    let build = builder(&stages, from);
                    let out_dir = format!("{}/target/release/", build.workdir().trim_end_matches('/'));
                    for source in &copy.sources {
                        assert!(
                            source.starts_with(&out_dir),
                            "line {}: COPY --from={from} {source}: expected under {out_dir}, where \
                             `cargo build --release` in WORKDIR {} puts binaries",
                            copy.line,
                            build.workdir()
                        );
                    }
                    let release_build = build.runs().any(|r| {
                        r.args.contains("cargo build")
                            && r.args.contains("--release")
                            && r.args.contains("--locked")
                    });
                    assert!(release_build, "stage {from} must run `cargo build --release --locked`");
                    let moves_target = build.instructions.iter().any(|i| {
                        i.args.contains("CARGO_TARGET_DIR")
                            || i.args.contains("--target-dir")
                            || i.args.contains("--target ")
                    });
                    assert!(!moves_target, "stage {from} must leave cargo's output in target/release");
                    assert!(
                        copy.dest.starts_with(BIN_DIR),
                        "line {}: binaries go to {BIN_DIR} (the Deployments run them from there)",
                        copy.line
                    );
                }
            }
        }
    }

    // Every workspace package is inside what the builder copies, or cargo cannot load the
    // workspace.
    let metadata = tools::cargo_metadata();
    for package in metadata["packages"].as_array().unwrap() {
        let manifest = std::path::Path::new(package["manifest_path"].as_str().unwrap());
        let rel = manifest.strip_prefix(&root).unwrap().to_string_lossy().to_string();
        let covered =
            context_sources.iter().any(|s| s == "." || rel == *s || rel.starts_with(&format!("{s}/")));
        assert!(covered, "{rel} is a workspace member that deploy/Dockerfile does not copy");
    }

    // The context filter lets every copied path in.
    let ignore = std::fs::read_to_string(deploy_dir().join("Dockerfile.dockerignore"))
        .expect("deploy/Dockerfile.dockerignore filters the build context");
    let let_in: Vec<&str> = ignore.lines().filter_map(|l| l.trim().strip_prefix('!')).collect();
    for source in &context_sources {
        assert!(
            let_in.iter().any(|l| l.trim_end_matches('/') == source.trim_end_matches('/')),
            "deploy/Dockerfile.dockerignore must let {source} into the build context (a `!{source}` line)"
        );
    }
}

#[test]
fn images_are_pinned_the_runtime_is_small_and_nobody_is_root() {
    let stages = stages();
    let metadata = tools::cargo_metadata();
    for stage in &stages {
        let (_, tag, digest) = image_parts(&stage.image);
        assert!(
            digest.is_some() || tag.as_deref().is_some_and(|t| t != "latest"),
            "FROM {}: pin the image by tag or digest",
            stage.image
        );
    }

    // The builder's toolchain is at least the workspace's rust-version.
    let builder = &stages[0];
    let (repo, tag, _) = image_parts(&builder.image);
    assert_eq!(repo, "rust", "the builder is the official rust image");
    let tag = tag.unwrap();
    let version: Vec<u64> = tag.split('-').next().unwrap().split('.').map(|p| p.parse().unwrap()).collect();
    let rust_version = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|p| p["rust_version"].as_str())
        .unwrap_or("1.89");
    let wanted: Vec<u64> = rust_version.split('.').map(|p| p.parse().unwrap()).collect();
    assert!(version >= wanted, "rust:{tag} is older than the workspace's rust-version {rust_version}");

    // The runtime needs glibc only (rustls, no OpenSSL), on the builder's Debian release.
    let runtime = stages.last().unwrap();
    let (runtime_repo, runtime_tag, _) = image_parts(&runtime.image);
    let small = runtime_repo == "gcr.io/distroless/cc-debian12"
        || (runtime_repo == "debian"
            && runtime_tag.as_deref().is_some_and(|t| t.starts_with("bookworm") && t.contains("slim")));
    assert!(
        small,
        "the runtime image should be distroless/cc-debian12 or debian bookworm-slim, not {}",
        runtime.image
    );
    assert!(
        tag.contains("bookworm"),
        "builder rust:{tag} and the runtime must share a Debian release (bookworm)"
    );

    let user = runtime.last("USER").expect("the runtime stage sets USER");
    let uid = user.args.split(':').next().unwrap();
    let uid: u64 = uid.parse().unwrap_or_else(|_| {
        panic!("USER {}: use a numeric uid, so that the kubelet can enforce runAsNonRoot", user.args)
    });
    assert_ne!(uid, 0, "the runtime must not run as root");
    let later = runtime.instructions.iter().filter(|i| i.line > user.line).any(|i| i.keyword == "RUN");
    assert!(!later, "nothing may RUN after USER in the runtime stage");

    // The entrypoint is one of the binaries.
    if let Some(entry) = runtime.last("ENTRYPOINT") {
        let ok = IMAGE_BINARIES.iter().any(|b| entry.args.contains(&format!("{BIN_DIR}/{b}\"")));
        assert!(ok, "ENTRYPOINT {} runs none of the image's binaries", entry.args);
    }
}

#[test]
fn the_reader_finds_copies_bins_and_tags() {
    let text = "FROM rust:1.95-slim AS build\nWORKDIR /src\n# c\nRUN cargo build --release \\\n  --bin a \\\n  # note\n  --bin=b\nFROM reg:5000/x/y:1.2@sha256:ab\nCOPY --from=build /src/target/release/a /usr/local/bin/a\n";
    let st = dockerfile::stages(text);
    assert_eq!(st.len(), 2);
    assert_eq!(st[0].name.as_deref(), Some("build"));
    assert_eq!(st[0].workdir(), "/src");
    let run = st[0].runs().next().unwrap();
    assert_eq!(dockerfile::cargo_bins(&run.args), vec!["a", "b"]);
    assert_eq!(run.line, 4);
    let c = &st[1].copies()[0];
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!(c.sources, vec!["/src/target/release/a"]);
    assert_eq!(
        image_parts("reg:5000/x/y:1.2@sha256:ab"),
        ("reg:5000/x/y".to_string(), Some("1.2".to_string()), Some("sha256:ab".to_string()))
    );
    assert_eq!(image_parts("reg:5000/x/y"), ("reg:5000/x/y".to_string(), None, None));
}

#[test]
fn the_image_builds_like_the_makefile() {
    // `make build` (PROFILE=release) is `cargo build --locked --workspace --bins --release`; the
    // image builds the same way, for the binaries it holds.
    let Ok(makefile) = std::fs::read_to_string(repo_root().join("Makefile")) else {
        return; // no Makefile yet: nothing to agree with
    };
    let recipe: Vec<&str> = makefile
        .lines()
        .skip_while(|l| !l.starts_with("build:"))
        .skip(1)
        .take_while(|l| l.starts_with('\t'))
        .filter(|l| l.contains(" build "))
        .collect();
    assert!(!recipe.is_empty(), "the Makefile's build target runs no cargo build");
    let stages = stages();
    let docker_build =
        stages[0].runs().find(|r| r.args.contains("cargo build")).expect("the builder runs cargo build");
    for flag in ["--locked", "--release"] {
        assert!(
            recipe.iter().any(|l| l.contains(flag)),
            "the Makefile's build has no {flag}; align deploy/Dockerfile"
        );
        assert!(
            docker_build.args.contains(flag),
            "deploy/Dockerfile builds without {flag}, unlike `make build`"
        );
    }
}
