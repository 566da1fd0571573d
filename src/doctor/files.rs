//! The checks of the files docker and the containers tools read: `docker`,
//! `containers` and `cp.icr.io`. Where the files are is `configure`'s
//! knowledge; this only reads them, and never quotes a secret in them.

use super::{configure_fix, Check, CONFIGURE_FIX};
use crate::configure::{self, ConfigFile, Route, HELPER_NAME};
use crate::registry::IbmHost;
use crate::Env;

/// IBM's Entitled Registry: an IBM name, but not a Container Registry host.
pub const ENTITLED_REGISTRY: &str = "cp.icr.io";

/// The `docker` check: docker's `config.json` sends `host` to ibmcr, and no
/// `auths` entry answers it instead.
pub fn docker(env: &Env, host: IbmHost) -> Check {
    let file = match configure::docker_config(env) {
        Ok(file) => file,
        Err(e) => return Check::problem("docker", format!("{e:#}"), None),
    };
    let shown = file.path.display();
    if let Some(why) = file.error() {
        return Check::problem(
            "docker",
            format!("{shown}: {why}"),
            Some(format!("repair it, then {CONFIGURE_FIX}")),
        );
    }
    if !file.exists() {
        return Check::problem(
            "docker",
            format!("{shown} does not exist: docker calls no helper for {host}"),
            configure_fix(),
        );
    }
    let store = file.creds_store();
    let via_store = store.as_deref() == Some(HELPER_NAME);
    match (file.cred_helper(host.name()), file.auths_credentials(host.name())) {
        (Some(helper), _) if helper == HELPER_NAME => Check::ok(
            "docker",
            format!("{shown} sends {host} to ibmcr (credHelpers)"),
        ),
        (Some(helper), _) => Check::problem(
            "docker",
            format!("{shown}: credHelpers sends {host} to docker-credential-{helper}, not ibmcr"),
            Some(format!(
                "set \"{host}\": \"ibmcr\" in its credHelpers (configure leaves another helper's entry alone)"
            )),
        ),
        // docker's credsStore answers before auths (auths keeps only the
        // email); podman reads that auths entry, which `containers` checks.
        (None, Some(key)) if via_store => Check::ok(
            "docker",
            format!("{shown} sends {host} to ibmcr (credsStore, which docker asks before its auths entry `{key}`)"),
        ),
        (None, None) if via_store => Check::ok(
            "docker",
            format!("{shown} sends {host} to ibmcr (credsStore)"),
        ),
        (None, Some(key)) => Check::problem(
            "docker",
            format!(
                "{shown} names no helper for {host}: docker answers it from the auths entry `{key}`, not from ibmcr"
            ),
            configure_fix(),
        ),
        (None, None) => {
            let why = match store {
                Some(other) => format!("credsStore is {other} and no credHelpers entry names ibmcr"),
                None => "no credsStore, no credHelpers entry".to_string(),
            };
            Check::problem(
                "docker",
                format!("{shown} does not send {host} to ibmcr ({why}): docker never calls it"),
                configure_fix(),
            )
        }
    }
}

/// The `containers` check: in the order podman, skopeo and buildah read
/// their files, the first that says anything about `host` sends it to ibmcr.
pub fn containers(env: &Env, uid: u32, host: IbmHost) -> Check {
    let files = match configure::containers_configs(env, uid) {
        Ok(files) => files,
        Err(e) => return Check::problem("containers", format!("{e:#}"), None),
    };
    for file in &files {
        let shown = file.path.display();
        if let Some(why) = file.error() {
            return Check::problem(
                "containers",
                format!("{shown}: {why}: podman, skopeo and buildah stop there"),
                Some("repair or remove it".to_string()),
            );
        }
        match file.route(host.name()) {
            Route::Nothing => continue,
            Route::Helper(helper) if helper == HELPER_NAME => {
                return Check::ok(
                    "containers",
                    format!("{shown} sends {host} to ibmcr (credHelpers), for podman, skopeo and buildah"),
                )
            }
            Route::Helper(helper) => {
                return Check::problem(
                    "containers",
                    format!(
                        "{shown}: credHelpers sends {host} to docker-credential-{helper}, not ibmcr (podman, skopeo and buildah read it first)"
                    ),
                    Some(format!("set \"{host}\": \"ibmcr\" in its credHelpers")),
                )
            }
            Route::Auths(key) => {
                return Check::problem(
                    "containers",
                    format!(
                        "podman, skopeo and buildah answer {host} from the auths entry `{key}` in {shown}, before any helper"
                    ),
                    Some(format!(
                        "`podman logout --authfile {shown} {host}` removes it; then {CONFIGURE_FIX}"
                    )),
                )
            }
        }
    }
    let read: Vec<String> = files.iter().map(|f| f.path.display().to_string()).collect();
    Check::problem(
        "containers",
        format!(
            "podman, skopeo and buildah do not send {host} to ibmcr: none of {} names it in credHelpers (they ignore credsStore)",
            read.join(", ")
        ),
        configure_fix(),
    )
}

/// The `cp.icr.io` check: IBM's Entitled Registry wants an entitlement key
/// (user `cp`), not an IBM Cloud API key, so a `credHelpers` entry sending
/// it to ibmcr serves only what is stored for it. `stored`: whether the
/// store holds a credential for it (`None`: the store could not say).
pub fn entitled_registry(env: &Env, uid: u32, stored: Option<bool>) -> Check {
    let mut files: Vec<ConfigFile> = configure::docker_config(env).into_iter().collect();
    files.extend(configure::containers_configs(env, uid).unwrap_or_default());
    let mut routed: Vec<String> = Vec::new();
    for file in &files {
        let shown = file.path.display().to_string();
        if file.cred_helper(ENTITLED_REGISTRY).as_deref() == Some(HELPER_NAME)
            && !routed.contains(&shown)
        {
            routed.push(shown);
        }
    }
    if routed.is_empty() {
        return Check::ok(
            ENTITLED_REGISTRY,
            format!(
                "no credHelpers entry sends {ENTITLED_REGISTRY} (IBM's Entitled Registry) to ibmcr"
            ),
        );
    }
    let files = routed.join(", ");
    match stored {
        Some(true) => Check::ok(
            ENTITLED_REGISTRY,
            format!(
                "credHelpers in {files} sends {ENTITLED_REGISTRY} to ibmcr, which answers the credential stored for it as it is (it mints nothing for the Entitled Registry)"
            ),
        ),
        _ => Check::problem(
            ENTITLED_REGISTRY,
            format!(
                "credHelpers in {files} sends {ENTITLED_REGISTRY}, IBM's Entitled Registry, to ibmcr; it is not a Container Registry host, so ibmcr mints nothing for it, and nothing is stored for it"
            ),
            Some(format!(
                "remove \"{ENTITLED_REGISTRY}\" from credHelpers there, or store your entitlement key: `docker login {ENTITLED_REGISTRY} -u cp --password-stdin`"
            )),
        ),
    }
}
