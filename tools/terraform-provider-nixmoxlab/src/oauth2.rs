//! `nixmoxlab_provider_oauth2`: an OAuth2/OpenID client of the lab's
//! identity provider, standing in for `authentik_provider_oauth2`. Managed
//! through the identity provider's admin API; Read asks it, so a client
//! deleted or changed behind Terraform's back shows as drift. The client
//! secret is made by the identity provider (empty for public clients) and is
//! a sensitive attribute.

use crate::api::{Api, Found};
use crate::values::{attr, need_strings, need_text, string, string_list, text};
use crate::Shared;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, Schema,
};
use tf_provider::value::{Value, ValueEmpty, ValueList, ValueString};
use tf_provider::{map, AttributePath, Diagnostics, Resource};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State<'a> {
    #[serde(borrow)]
    pub id: ValueString<'a>,
    #[serde(borrow)]
    pub name: ValueString<'a>,
    #[serde(borrow)]
    pub client_id: ValueString<'a>,
    #[serde(borrow)]
    pub client_type: ValueString<'a>,
    #[serde(borrow)]
    pub redirect_uris: ValueList<ValueString<'a>>,
    #[serde(borrow)]
    pub scopes: ValueList<ValueString<'a>>,
    #[serde(borrow)]
    pub client_secret: ValueString<'a>,
}

pub struct OAuth2Provider {
    pub shared: Shared,
}

fn from_api<'a>(o: &Json) -> Option<State<'a>> {
    let s = |k: &str| o[k].as_str().map(str::to_string);
    let list = |k: &str| -> Option<Vec<String>> {
        o[k].as_array()?
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    Some(State {
        id: string(s("pk")?),
        name: string(s("name")?),
        client_id: string(s("client_id")?),
        client_type: string(s("client_type")?),
        redirect_uris: string_list(list("redirect_uris")?),
        scopes: string_list(list("scopes")?),
        client_secret: string(s("client_secret").unwrap_or_default()),
    })
}

fn body(diags: &mut Diagnostics, st: &State) -> Option<Json> {
    Some(json!({
        "name": need_text(diags, &st.name, "name")?,
        "client_id": need_text(diags, &st.client_id, "client_id")?,
        "client_type": need_text(diags, &st.client_type, "client_type")?,
        "redirect_uris": need_strings(diags, &st.redirect_uris, "redirect_uris")?,
        "scopes": need_strings(diags, &st.scopes, "scopes")?,
    }))
}

fn path(pk: &str) -> String {
    format!("/api/v3/providers/oauth2/{pk}/")
}

fn unreadable(diags: &mut Diagnostics) {
    diags
        .root_error_short("nixmoxlab: the identity provider answered with an object it should not");
}

#[async_trait]
impl Resource for OAuth2Provider {
    type State<'a> = State<'a>;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        use AttributeConstraint::{Computed, Required};
        use AttributeType::{List, String};
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::plain(
                    "An OAuth2/OpenID client: a STAND-IN for authentik_provider_oauth2",
                ),
                attributes: map! {
                    "id" => attr(String, Computed, "The provider's key in the identity provider"),
                    "name" => attr(String, Required, "The provider's name"),
                    "client_id" => attr(String, Required, "The OAuth2 client id"),
                    "client_type" => attr(String, Required, "confidential or public"),
                    "redirect_uris" => attr(List(Box::new(String)), Required, "Redirect URIs the client may use"),
                    "scopes" => attr(List(Box::new(String)), Required, "Scopes the client may ask for"),
                    "client_secret" => Attribute {
                        sensitive: true,
                        ..attr(String, Computed, "The client secret (empty for a public client)")
                    },
                },
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        if let Some(t) = text(&config.client_type) {
            if t != "confidential" && t != "public" {
                diags.error_short(
                    "client_type must be \"confidential\" or \"public\"",
                    AttributePath::new("client_type"),
                );
            }
        }
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let Some(pk) = text(&state.id) else {
            return Some((state, private));
        };
        let Some(api) = self
            .shared
            .settings(diags)
            .and_then(|s| Api::new(diags, &s))
        else {
            return Some((state, private));
        };
        match api.call(diags, "GET", &path(&pk), None) {
            Some(Found::Gone) => None,
            Some(Found::Object(o)) => match from_api(&o) {
                Some(st) => Some((st, private)),
                None => {
                    unreadable(diags);
                    Some((state, private))
                }
            },
            None => Some((state, private)),
        }
    }

    async fn plan_create<'a>(
        &self,
        _diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let mut planned = proposed;
        planned.id = Value::Unknown;
        planned.client_secret = Value::Unknown;
        Some((planned, Default::default()))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        prior_private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        // Every attribute is updated in place, as Authentik does; the secret stays.
        Some((proposed, prior_private, Vec::new()))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        prior_private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::PrivateState<'a>> {
        Some(prior_private)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        planned_private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let settings = self.shared.settings(diags)?;
        let api = Api::new(diags, &settings)?;
        let b = body(diags, &planned)?;
        match api.call(diags, "POST", "/api/v3/providers/oauth2/", Some(&b))? {
            Found::Object(o) => match from_api(&o) {
                Some(st) => Some((st, planned_private)),
                None => {
                    unreadable(diags);
                    None
                }
            },
            Found::Gone => {
                unreadable(diags);
                None
            }
        }
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        planned_private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let settings = self.shared.settings(diags)?;
        let api = Api::new(diags, &settings)?;
        let pk = need_text(diags, &prior.id, "id")?;
        let b = body(diags, &planned)?;
        match api.call(diags, "PATCH", &path(&pk), Some(&b))? {
            Found::Object(o) => match from_api(&o) {
                Some(st) => Some((st, planned_private)),
                None => {
                    unreadable(diags);
                    None
                }
            },
            Found::Gone => {
                diags.root_error_short(format!(
                    "nixmoxlab: OAuth2 provider {pk} is gone; run the plan again to create it"
                ));
                None
            }
        }
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        _planned_private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        let settings = self.shared.settings(diags)?;
        let api = Api::new(diags, &settings)?;
        let pk = need_text(diags, &prior.id, "id")?;
        // Already gone is fine.
        api.call(diags, "DELETE", &path(&pk), None).map(|_| ())
    }
}
