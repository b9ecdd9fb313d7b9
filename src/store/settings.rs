//! `system_settings` rows.

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;

use crate::error::Result;

/// Every setting as key → value.
pub async fn all(client: &impl GenericClient) -> Result<BTreeMap<String, String>> {
    let rows = client
        .query(
            "SELECT setting_key, setting_value FROM system_settings",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Sets `key` to `value`, inserting the row when it is missing.
pub async fn upsert(client: &impl GenericClient, key: &str, value: &str) -> Result<()> {
    client
        .execute(
            "INSERT INTO system_settings (setting_key, setting_value) VALUES ($1, $2)
             ON CONFLICT (setting_key)
             DO UPDATE SET setting_value = EXCLUDED.setting_value, updated_at = now()",
            &[&key, &value],
        )
        .await?;
    Ok(())
}
