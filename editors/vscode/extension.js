// Starts `ardpipe lsp` for .ard files: diagnostics from `ardpipe check`, completion, hover,
// formatting and go to definition all come from the server.
const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("ardpipe").get("path") || "ardpipe";
  const serverOptions = {
    command,
    args: ["lsp"],
    transport: TransportKind.stdio,
  };
  const clientOptions = {
    documentSelector: [{ scheme: "file", language: "ard" }, { scheme: "untitled", language: "ard" }],
  };
  client = new LanguageClient("ardpipe", "ardpipe", serverOptions, clientOptions);
  context.subscriptions.push({ dispose: () => client && client.stop() });
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
