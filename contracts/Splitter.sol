// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Moves ETH from inside a transaction: internal transfers for blockcast's trace tests.
/// @notice Each way ETH can leave a contract below the top-level call: a value CALL (`split`),
/// one made two frames deep (`splitVia`), one made in a delegated frame (`splitByDelegate`), a
/// CREATE and a CREATE2 with value (`spawn`), and a SELFDESTRUCT (`destroy`); and transfers that a
/// revert undoes (`splitThenRevert`).
contract Splitter {
    /// A forwarded amount that the recipient refused (its frame failed; the split goes on).
    event Refused(address indexed to, uint256 amount);

    receive() external payable {}

    /// Sends `amounts[i]` to `to[i]` with a plain value call each; a recipient that fails is
    /// skipped (its frame reverts, the transaction does not).
    function split(address payable[] calldata to, uint256[] calldata amounts) external payable {
        require(to.length == amounts.length, "Splitter: lengths differ");
        for (uint256 i = 0; i < to.length; i++) {
            (bool ok,) = to[i].call{value: amounts[i]}("");
            if (!ok) emit Refused(to[i], amounts[i]);
        }
    }

    /// Forwards the whole call value to `next.split`, so its transfers are two frames deep.
    function splitVia(Splitter next, address payable[] calldata to, uint256[] calldata amounts) external payable {
        next.split{value: msg.value}(to, amounts);
    }

    /// Splits through an external call to itself, then reverts: every transfer made is undone.
    function splitThenRevert(address payable[] calldata to, uint256[] calldata amounts) external payable {
        this.split{value: msg.value}(to, amounts);
        revert("Splitter: reverted after splitting");
    }

    /// Runs `implementation.split` in this contract's context (DELEGATECALL): the ETH leaves this contract.
    function splitByDelegate(address implementation, address payable[] calldata to, uint256[] calldata amounts)
        external
        payable
    {
        (bool ok,) = implementation.delegatecall(abi.encodeCall(Splitter.split, (to, amounts)));
        require(ok, "Splitter: delegated split failed");
    }

    /// Creates one child with CREATE and one with CREATE2 (`salt`), endowing each with a value.
    function spawn(bytes32 salt, uint256 createValue, uint256 create2Value)
        external
        payable
        returns (address created, address created2)
    {
        created = address(new SplitterChild{value: createValue}());
        created2 = address(new SplitterChild{value: create2Value, salt: salt}());
    }

    /// Self-destructs, sending this contract's whole balance to `to`.
    function destroy(address payable to) external {
        selfdestruct(to);
    }
}

/// @title A contract created with value by {Splitter.spawn}.
contract SplitterChild {
    constructor() payable {}
}
