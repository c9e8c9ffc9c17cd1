/**
 * The addresses a libp2p node could not listen on, read from the error its start throws
 * (UnsupportedListenAddressesError): one paragraph, then each failed address on a line of its own
 * indented by two spaces, `/ip4/…/tcp/N: Error: listen EADDRINUSE: …`, with its stack beneath.
 * The CLI's `--p2p-listen` refusal and the coordinator's notice for ports of the last start both
 * name them without the stacks.
 */
export function failedListens (message: string): Array<{ address: string, why: string }> {
  return [...message.matchAll(/^ {2}(\/\S+): (?:Error: )?(.*)$/gm)].map(([, address, why]) => ({ address: address ?? '', why: why ?? '' }))
}
