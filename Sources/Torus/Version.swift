import CLiburing
/// Placeholder while the core is written.
public enum TorusVersion { public static let string = "0.1.0" }
