import Gridwork
import SwiftUI

/// First sign-in, and signing in again when the session ended (the same
/// account's store stays open; its unsent work waits for this).
struct SignInView: View {
    @EnvironmentObject var model: AppModel
    @AppStorage("gridwork.server") private var server = "https://"
    @AppStorage("gridwork.username") private var username = ""
    @State private var password = ""
    @State private var busy = false
    @State private var message: String?

    var body: some View {
        Form {
            TextField("Server", text: $server)
                .keyboardType(.URL)
                .textInputAutocapitalization(.never)
                .autocorrectionDisabled()
            TextField("User name", text: $username)
                .textInputAutocapitalization(.never)
                .autocorrectionDisabled()
            SecureField("Password", text: $password)
            Button(busy ? "Signing in…" : "Sign in") {
                Task { await signIn() }
            }
            .disabled(busy || username.isEmpty || password.isEmpty)
            if let message {
                Text(message).foregroundStyle(.red)
            }
        }
        .navigationTitle("Sign in")
    }

    private func signIn() async {
        busy = true
        defer { busy = false }
        do {
            try await model.signIn(server: server, username: username, password: password)
            password = ""
            message = nil
        } catch GridworkError.AuthFailed {
            message = "Wrong user name or password."
        } catch GridworkError.AccountMismatch {
            message = "This phone's store for that name belongs to another account."
        } catch {
            message = describe(error)
        }
    }
}
