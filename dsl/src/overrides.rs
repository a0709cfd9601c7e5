//! `--set path.to.key=value` and the dotted entries of `variant` blocks: both edit the syntax
//! tree before checking, so an override is checked exactly like file content and its errors
//! point at the override.

use crate::ast::{Block, BodyItem, Entry, Ident, Item};
use crate::check::{NAMED_BLOCKS, TOP_BLOCKS};
use crate::diag::{Code, Problem, Sink};
use crate::eval::Scope;
use crate::suggest;

/// Applies one override; `scope` receives `let.NAME=...` overrides.
pub fn apply(items: &mut Vec<Item>, e: &Entry, scope: Option<&mut Scope>, sink: &mut Sink) {
    let key = &e.key;
    let Some(first) = key.first() else { return };
    if first.name == "let" {
        match (key.get(1), key.len(), scope) {
            (Some(name), 2, Some(scope)) => {
                if !scope.redefine(name, e.value.clone()) {
                    let names = scope.names();
                    sink.push(
                        Problem::error(
                            Code::Unresolved,
                            name.span,
                            format!("no variable named `{}`", name.name),
                        )
                        .label("not defined in the pipeline")
                        .help(suggest::help_for(
                            &name.name,
                            "its variables are",
                            &names,
                        )),
                    );
                }
            }
            (_, _, None) => sink.push(
                Problem::error(
                    Code::BadOverride,
                    first.span,
                    "variables cannot be set inside a variant",
                )
                .label("not here")
                .help("set a block's key instead, e.g. `adapter.qv.r0 = 4`"),
            ),
            _ => sink.push(
                Problem::error(
                    Code::BadOverride,
                    e.key_span(),
                    "a variable override is `let.NAME=VALUE`",
                )
                .label("bad variable path")
                .help("e.g. `--set let.rank=4`"),
            ),
        }
        return;
    }
    if !TOP_BLOCKS.contains(&first.name.as_str()) || first.name == "variant" {
        let mut allowed: Vec<&str> = TOP_BLOCKS
            .iter()
            .copied()
            .filter(|b| *b != "variant")
            .collect();
        allowed.push("let");
        sink.push(
            Problem::error(
                Code::UnknownBlock,
                first.span,
                format!("`{}` is not a block an override can set", first.name),
            )
            .label("unknown block")
            .help(suggest::help_for(
                &first.name,
                "overrides start with",
                &allowed,
            )),
        );
        return;
    }
    let named = NAMED_BLOCKS.contains(&first.name.as_str());
    let rest_from = if named { 2 } else { 1 };
    if key.len() <= rest_from {
        let example = if named {
            format!("`{}.NAME.key=value`", first.name)
        } else {
            format!("`{}.key=value`", first.name)
        };
        sink.push(
            Problem::error(
                Code::BadOverride,
                e.key_span(),
                "an override must end in a key",
            )
            .label("names a block, not a key")
            .help(format!("write {example}")),
        );
        return;
    }
    let block = if named {
        let label = &key[1];
        let found = items.iter().position(|i| {
            matches!(i, Item::Block(b) if b.kind.name == first.name && b.label.as_ref().map(|l| &l.name) == Some(&label.name))
        });
        match found {
            Some(i) => match &mut items[i] {
                Item::Block(b) => b,
                _ => return,
            },
            None => {
                let names: Vec<&str> = items
                    .iter()
                    .filter_map(|i| match i {
                        Item::Block(b) if b.kind.name == first.name => {
                            b.label.as_ref().map(|l| l.name.as_str())
                        }
                        _ => None,
                    })
                    .collect();
                sink.push(
                    Problem::error(
                        Code::Unresolved,
                        label.span,
                        format!("no {} named `{}`", first.name, label.name),
                    )
                    .label("not in the pipeline")
                    .help(if names.is_empty() {
                        format!("the pipeline has no `{}` blocks", first.name)
                    } else {
                        suggest::help_for(&label.name, &format!("its {}s are", first.name), &names)
                    }),
                );
                return;
            }
        }
    } else {
        let found = items
            .iter()
            .position(|i| matches!(i, Item::Block(b) if b.kind.name == first.name));
        let i = match found {
            Some(i) => i,
            None => {
                items.push(Item::Block(empty_block(first)));
                items.len() - 1
            }
        };
        match &mut items[i] {
            Item::Block(b) => b,
            _ => return,
        }
    };
    set_in(block, &key[rest_from..], e);
}

fn empty_block(kind: &Ident) -> Block {
    Block {
        kind: kind.clone(),
        label: None,
        body: Vec::new(),
        span: kind.span,
        close: kind.span,
    }
}

fn set_in(block: &mut Block, path: &[Ident], e: &Entry) {
    let [head, tail @ ..] = path else { return };
    if tail.is_empty() {
        let new = Entry {
            key: vec![head.clone()],
            value: e.value.clone(),
            span: e.span,
        };
        match block
            .body
            .iter_mut()
            .find(|b| matches!(b, BodyItem::Entry(x) if x.key_text() == head.name))
        {
            Some(slot) => *slot = BodyItem::Entry(new),
            None => block.body.push(BodyItem::Entry(new)),
        }
        return;
    }
    let i = match block
        .body
        .iter()
        .position(|b| matches!(b, BodyItem::Block(x) if x.kind.name == head.name))
    {
        Some(i) => i,
        None => {
            block.body.push(BodyItem::Block(empty_block(head)));
            block.body.len() - 1
        }
    };
    if let BodyItem::Block(b) = &mut block.body[i] {
        set_in(b, tail, e);
    }
}
