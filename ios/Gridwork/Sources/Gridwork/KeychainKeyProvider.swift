import Foundation
import Security

/// The Keychain item exists but cannot be used. Never replaced silently:
/// the database is encrypted with this key and would be lost with it.
public enum DatabaseKeyUnreadable: Error, Equatable, Sendable {
    /// Reading the item failed, e.g. `errSecInteractionNotAllowed` before the
    /// first unlock after a restart, or a missing entitlement.
    case keychain(OSStatus)
    /// The item does not hold a key of 32 bytes.
    case wrongSize(Int)
    /// No key could be made or stored (random source or Keychain failure).
    case notCreated(OSStatus)
}

/// The store's 32-byte database key: random on first use (SecRandomCopyBytes)
/// and kept in the Keychain as a generic password (`service`, `account`),
/// the counterpart of the Kotlin `DatabaseKeyFile` over the Android Keystore.
///
/// Accessible after the first unlock, on this device only: background sync
/// can open the store while the phone is locked, and the key is neither
/// synced to iCloud nor restored from a backup onto another device (where
/// the database it opens is no use: exclude the data directory from backups).
///
/// Use one `account` per store, e.g. the `StoreConfig.accountId`.
public struct KeychainKeyProvider: Sendable {
    public static let keyBytes = 32

    public let service: String
    public let account: String

    public init(service: String, account: String) {
        self.service = service
        self.account = account
    }

    /// The key: read from the Keychain, or made and stored on first use.
    public func getOrCreate() throws -> Data {
        if let existing = try read() {
            return existing
        }
        let key = try randomKey()
        var item = itemQuery()
        item[kSecValueData as String] = key
        item[kSecAttrAccessible as String] = kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly
        let status = SecItemAdd(item as CFDictionary, nil)
        if status == errSecDuplicateItem {
            // Another thread or process stored one in between: that one is the key.
            guard let stored = try read() else { throw DatabaseKeyUnreadable.keychain(status) }
            return stored
        }
        guard status == errSecSuccess else { throw DatabaseKeyUnreadable.notCreated(status) }
        return key
    }

    /// The stored key; nil only when there is no item at all.
    private func read() throws -> Data? {
        var query = itemQuery()
        query[kSecReturnData as String] = true
        query[kSecMatchLimit as String] = kSecMatchLimitOne
        var result: CFTypeRef?
        let status = SecItemCopyMatching(query as CFDictionary, &result)
        if status == errSecItemNotFound {
            return nil
        }
        // Any other failure (locked, no access) must not lead to a new key.
        guard status == errSecSuccess, let data = result as? Data else {
            throw DatabaseKeyUnreadable.keychain(status)
        }
        guard data.count == Self.keyBytes else { throw DatabaseKeyUnreadable.wrongSize(data.count) }
        return data
    }

    private func itemQuery() -> [String: Any] {
        [
            kSecClass as String: kSecClassGenericPassword,
            kSecAttrService as String: service,
            kSecAttrAccount as String: account,
        ]
    }

    private func randomKey() throws -> Data {
        var bytes = [UInt8](repeating: 0, count: Self.keyBytes)
        let status = SecRandomCopyBytes(kSecRandomDefault, bytes.count, &bytes)
        guard status == errSecSuccess else { throw DatabaseKeyUnreadable.notCreated(status) }
        return Data(bytes)
    }
}
