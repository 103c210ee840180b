import ArgumentParser
import Mamba2

@main
struct Mamba2Command: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "mamba2", abstract: "Mamba-2 in Swift")
    func run() throws { print(BLAS.name) }
}
