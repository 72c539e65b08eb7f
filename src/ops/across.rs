//! What a migration to another cluster adds to the lifecycle: alias
//! changes made one cluster at a time in a safe order, and ending the
//! hand-over once readers have moved (docs/design.md, "Migrating to another
//! cluster").

use super::{changed, healthy_state, Changed, OpsError};
use crate::context::Ctx;
use crate::index::aliases::{AliasAction, AliasState};
use crate::index::Cluster;

/// Applies `actions` in one atomic request per cluster, `first`'s first:
/// on one cluster that is the one atomic switch; across two, the order in
/// which every view a worker may read between the requests keeps every
/// index a reader may use in the edits' way (docs/design.md, "Migrating to
/// another cluster").
pub(super) async fn update_in_order(
    ctx: &Ctx,
    st: &AliasState,
    actions: Vec<AliasAction>,
    first: Cluster,
) -> Result<(), OpsError> {
    let (now, later): (Vec<_>, Vec<_>) = actions
        .into_iter()
        .partition(|a| st.cluster_of(a.index()) == first);
    for (cluster, batch) in [(first, now), (first.other(), later)] {
        if !batch.is_empty() {
            ctx.on(cluster).update_aliases(&batch).await?;
        }
    }
    Ok(())
}

/// After a completion across clusters, once readers have moved to the new
/// cluster: the old index loses Current, Historical and the marker in one
/// request, so edits stop reaching it and rollback is no longer possible.
pub async fn retire_source(ctx: &Ctx) -> Result<Changed, OpsError> {
    let st = healthy_state(ctx).await?;
    let Some((old, new)) = st.both_current() else {
        return Err(OpsError::Refused(
            "no completion across clusters is waiting for readers to move".into(),
        ));
    };
    let (old, new) = (old.clone(), new.clone());
    let a = &ctx.aliases;
    let mut actions = vec![
        AliasAction::Remove {
            index: old.clone(),
            alias: a.current.clone(),
        },
        AliasAction::Remove {
            index: old.clone(),
            alias: a.historical.clone(),
        },
    ];
    if st.elsewhere.contains(&old) {
        actions.push(AliasAction::Remove {
            index: old.clone(),
            alias: a.elsewhere(),
        });
    }
    let on_old = ctx.client_in(&st, &old);
    on_old.update_aliases(&actions).await?;
    ctx.control.clear_completion().await?;
    tracing::warn!(old = %old, new = %new, "source retired");
    Ok(changed(
        format!(
            "{old} on {} no longer gets edits; {new} on {} is the only Current",
            on_old.public_base(),
            ctx.client_in(&st, &new).public_base()
        ),
        "rollback is no longer possible; delete the old index when you no longer need it",
        &new,
    ))
}
